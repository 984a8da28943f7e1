"""Per-domain roles and the disjoint-users split: exact results of the old splits, the split worked by hand,
no peeking, the no-shared-users rule of the strategies, and a sequence model fine-tuned end to end."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from translearn.cli.config import compose
from translearn.data import DisjointUsers, LeaveOneOut, PreparedData, prepare
from translearn.data.disjoint import SOURCE_SIDE, TARGET_SIDE
from translearn.data.facts import DataFacts
from translearn.data.history import HistoryIndex
from translearn.data.sources.synthetic import SyntheticSource
from translearn.data.splits import DROPPED, TEST, TRAIN, VALID, ColdStartUsers, RatioSplit, SplitError, TemporalSplit
from translearn.errors import ConfigError
from translearn.models import matrix_factorization
from translearn.strategies import Joint
from translearn.strategies.bridge import check_bridge, content_bridge, model_item_tower
from translearn.train import train

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
ARTS_OFFICE = DATA_ROOT / "amazon-arts-office" / "raw"
T, V, X, D = TRAIN, VALID, TEST, DROPPED


def _synthetic() -> SyntheticSource:
    return SyntheticSource(num_users=120, num_items=[50, 40], interactions_per_user=[8.0, 5.0], min_interactions=3,
                           overlap=0.7, seed=3)


# ---- the target-only splits keep their exact results --------------------------------------------------------

def _digest(p: PreparedData) -> str:
    """Target roles, every evaluation query and every training sequence of an interleaved history index."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(p.roles).tobytes())
    index = HistoryIndex(p, scope="all")
    for role in ("valid", "test"):
        q = index.eval_queries(role, 8)
        for a in (q.users, q.targets, q.history, q.lengths):
            h.update(np.ascontiguousarray(a).tobytes())
    s = index.train_sequences(8, long="windows")
    for a in (s.users, s.indptr, s.tokens):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# Recorded with the code before per-domain roles (main at a235e16), on the same data and seeds.
@pytest.mark.parametrize("split, digest", [
    (LeaveOneOut(), "cc8c16f6005d04cf"),
    (RatioSplit(ratios=(0.6, 0.2, 0.2)), "36be1d5f0667427e"),
    (RatioSplit(ratios=(0.6, 0.2, 0.2), temporal=True), "2557fd4ec16b3200"),
    (TemporalSplit(users_without_train="drop"), "28f83c0c402ebc58"),
    (ColdStartUsers(), "1f0e5d042b82bce9"),
])
def test_target_only_splits_keep_their_roles_and_histories(split, digest) -> None:
    p = prepare(_synthetic(), "target", ["source"], split=split, seed=1)
    assert _digest(p) == digest
    assert (p.role_of("source") == TRAIN).all() and p.train("source") is p.data.domain("source").interactions


def test_stage_views_keep_their_numbers() -> None:
    p = prepare(_synthetic(), "target", ["source"], split=LeaveOneOut(), seed=1)
    for domains, validate, digest, held in ((["source"], "source", "e837d71e666b0b91", 105),
                                            (["source", "target"], "target", "6c0c8a51c6990f9c", 70)):
        view = p.stage_view(domains, validate, seed=2)
        h = hashlib.sha256()
        for d in domains:
            inter = view.data.domain(d).interactions
            h.update(inter.users.tobytes())
            h.update(inter.items.tobytes())
        h.update(view.roles.tobytes())
        assert (h.hexdigest()[:16], int((view.roles == VALID).sum())) == (digest, held)


# ---- per-domain roles: one representation, saved and honoured ------------------------------------------------

@pytest.fixture
def hand(make_data):
    """u1: source a1 b3, target x2 y4 z6; u2: source a1, target x1 y2. Source row b (u1) is held out (VALID)."""
    return make_data(s=dict(users=["u1", "u1", "u2"], items=["a", "b", "a"], order=[1, 3, 1]),
                     t=dict(users=["u1", "u1", "u1", "u2", "u2"], items=["x", "y", "z", "x", "y"],
                            order=[2, 4, 6, 1, 2]))


def test_source_roles_are_saved_and_honoured(hand, tmp_path) -> None:
    p = PreparedData(hand, "t", ("s",), {"s": np.array([T, V, T], np.int8), "t": np.array([T, V, X, T, X], np.int8)})
    assert p.train("s").items.tolist() == [0, 0] and len(p.held_out("valid", "s")) == 1
    assert p.overlap("s").tolist() == [0, 1]
    p.save(tmp_path)
    back = PreparedData.load(tmp_path)
    assert {d: r.tolist() for d, r in back.domain_roles.items()} == {"s": [T, V, T], "t": [T, V, X, T, X]}
    assert back.digest() == p.digest()
    # the held-out source row b (order 3) is before u1's target valid (4) and test (6), but never history
    index = HistoryIndex(p, scope="all")
    b = int(index.items_to_tokens("s", np.array([1]))[0])
    for role in ("valid", "test"):
        assert b not in index.eval_queries(role, 10).history
    assert b not in index.train_sequences(10).tokens
    view = p.stage_view(["s"], "s", hold_out=False)
    assert view.data.domain("s").interactions.items.tolist() == [0, 0]  # the stage never sees b


def test_roles_must_fit_the_domain(hand) -> None:
    with pytest.raises(ValueError, match="roles of domain 's' must be 3 values"):
        PreparedData(hand, "t", ("s",), {"s": np.array([T, T], np.int8)})
    with pytest.raises(ValueError, match="roles of domain 't' must be 5 values"):
        PreparedData(hand, "t", ("s",), np.array([T, D, T, T, X], np.int8))  # dropped rows never get this far


# ---- DisjointUsers by hand ------------------------------------------------------------------------------------

@pytest.fixture
def shared3(make_data):
    """u1, u2, u3 in both domains (3 target rows each), u4 target only, u5 source only."""
    return make_data(
        s=dict(users=["u1", "u1", "u2", "u2", "u3", "u5", "u5"], items=["a", "b", "a", "c", "b", "a", "c"],
               order=[1, 2, 1, 2, 1, 1, 2]),
        t=dict(users=["u1"] * 3 + ["u2"] * 3 + ["u3"] * 3 + ["u4"] * 3,
               items=["x", "y", "z", "z", "x", "y", "y", "z", "x", "x", "y", "z"],
               order=[3, 1, 2, 1, 2, 3, 3, 2, 1, 1, 2, 3]),
    )


def test_disjoint_users_by_hand(shared3, static_source) -> None:
    split = DisjointUsers()
    side = split.sides(shared3, "t", ["s"], seed=4)
    # 3 shared users, source_share 0.5 -> 1.5 rounds up to 2 on the source side; u4 and u5 keep their rows
    assert sorted(side[:3].tolist()) == [SOURCE_SIDE, SOURCE_SIDE, TARGET_SIDE] and side[3:].tolist() == [0, 0]
    target_user = int(np.flatnonzero(side == TARGET_SIDE)[0])
    result = split(shared3, "t", ["s"], seed=4)
    s_users = shared3.domain("s").interactions.users
    assert result.roles["s"].tolist() == [D if u == target_user else T for u in s_users.tolist()]
    # target rows by user in order: u1 y z x, u2 z x y, u3 x z y, u4 x y z: leave-one-out by order key
    loo = {0: [X, T, V], 1: [T, V, X], 2: [X, V, T], 3: [T, V, X]}
    expect = [r for u in range(4) for r in ([D] * 3 if side[u] == SOURCE_SIDE else loo[u])]
    assert result.roles["t"].tolist() == expect
    prepared = prepare(static_source(shared3, "shared3"), "t", ["s"], split=split, seed=4)
    n_lost = int((s_users == target_user).sum())
    assert f"split(DisjointUsers): s 7 -> {7 - n_lost} ({n_lost} source rows of users assigned to the target side)" \
        in prepared.report
    assert "split(DisjointUsers): t 12 -> 6 (6 target rows of users assigned to the source side)" in prepared.report
    assert any("3 users with rows in t and a source -> 2 source side" in line for line in prepared.report)
    assert prepared.roles.tolist() == [r for r in expect if r != D]
    assert DataFacts.of(prepared).shared_users == {"s": 0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_user_trains_in_both_domains(seed) -> None:
    p = prepare(_synthetic(), "target", ["source"], split=DisjointUsers(source_share=0.3), seed=seed)
    assert len(np.intersect1d(p.train("source").users, p.train("target").users)) == 0
    assert len(p.overlap("source")) == 0 and p.stats()["overlap"] == {"source&target": 0}
    again = prepare(_synthetic(), "target", ["source"], split=DisjointUsers(source_share=0.3), seed=seed)
    assert again.digest() == p.digest()


def test_disjoint_users_is_cached_with_its_roles(tmp_path) -> None:
    built = prepare(_synthetic(), "target", ["source"], split=DisjointUsers(), seed=1, cache_dir=tmp_path)
    read = prepare(_synthetic(), "target", ["source"], split=DisjointUsers(), seed=1, cache_dir=tmp_path)
    assert read.digest() == built.digest() and read.report == built.report
    other = prepare(_synthetic(), "target", ["source"], split=DisjointUsers(source_share=0.7), seed=1,
                    cache_dir=tmp_path)
    assert len(other.train("source")) > len(built.train("source"))  # more users keep their source rows


def test_bad_settings_name_the_key(shared3) -> None:
    with pytest.raises(SplitError, match=r"data.split.source_share must be in \(0, 1\), got 1.0"):
        DisjointUsers(source_share=1.0)
    with pytest.raises(SplitError, match="data.split.ties must be one of"):
        DisjointUsers(ties="time")
    with pytest.raises(SplitError, match="data.source_domains is empty"):
        DisjointUsers()(shared3, "t", [], seed=0)


@pytest.mark.skipif(not ARTS_OFFICE.is_dir(), reason="Amazon Arts/Office data not present")
def test_disjoint_arts_office_counts_and_histories() -> None:
    from translearn.data import Deduplicate
    from translearn.data.sources import AmazonArtsOffice

    source = AmazonArtsOffice(root=str(ARTS_OFFICE))
    p = prepare(source, "office", ["arts"], preprocess={"dedup": Deduplicate()}, split=DisjointUsers(), seed=0)
    arts, office = p.data.domain("arts").interactions, p.data.domain("office").interactions
    # every one of the 9,577 users is in both domains: 4,789 keep Arts, 4,788 keep Office
    assert (len(np.unique(arts.users)), len(np.unique(office.users))) == (4789, 4788)
    assert len(np.intersect1d(arts.users, office.users)) == 0
    assert (len(arts), len(office)) == (54852, 48146)
    assert p.stats()["split"] == {"train": 38572, "valid": 4786, "test": 4788, "eval_users": 4788}
    index = HistoryIndex(p, scope="all")
    assert int((index.domain == index.domain_id("arts")).sum()) == len(arts)  # dropped Arts rows are gone
    for role in ("valid", "test"):
        q = index.eval_queries(role, 50)
        assert not (index.tokens_to_items("arts", q.history) >= 0).any()  # a target user shows no Arts item
    seqs = index.train_sequences(50)
    mixed = [u for u, a, b in zip(seqs.users, seqs.indptr[:-1], seqs.indptr[1:], strict=True)
             if len(np.unique(seqs.domain[a:b])) > 1]
    assert mixed == []  # no training sequence holds both domains


# ---- the no-shared-users rule ---------------------------------------------------------------------------------

def _facts(shared: int) -> DataFacts:
    return DataFacts("t", ("s",), {"s": np.ones(3, bool), "t": np.ones(3, bool)}, {"s": shared},
                     np.zeros(2, np.int64), {"s": False, "t": False})


@pytest.mark.parametrize("needs, tower, sequence, refused", [
    ("none", "id", False, False),
    ("content", "id", False, True), ("content", "text", False, False), ("content", "id_text", False, False),
    ("content", "image", False, False), ("content", "id", True, False),
    ("users", "text", False, True), ("users", "id", True, True),
])
def test_bridge_rule(needs, tower, sequence, refused) -> None:
    check_bridge("S", needs, _facts(shared=5), tower, sequence)  # shared users: everything goes
    if refused:
        with pytest.raises(ConfigError, match=r"^S (reads user vectors|works on users).*target_only$"):
            check_bridge("S", needs, _facts(shared=0), tower, sequence)
    else:
        check_bridge("S", needs, _facts(shared=0), tower, sequence)
    assert content_bridge("text") == "item content" and content_bridge("id", True) == "histories"
    assert content_bridge("id") is None


RUN = ["data.dataset.num_users=240", "data.dataset.num_items=[80,60]", "data.batch_size=128",
       "data.eval_batch_size=64", "trainer.max_epochs=1", "data/split=disjoint_users"]


@pytest.mark.parametrize("strategy", ["joint", "finetune", "mapping"])
def test_id_models_over_disjoint_users_refuse(strategy, tmp_path) -> None:
    cfg = compose([*RUN, f"strategy={strategy}", f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match="no users in common|shares no users"):
        train(cfg)
    assert not (tmp_path / "cache" / "stage").exists()  # refused before a stage was trained


def test_sasrec_finetunes_over_disjoint_users(tmp_path) -> None:
    overrides = [*RUN, "model=sasrec", "model.max_history=20", "model.embedding_dim=32", "model.inner_size=64",
                 "data.dataset.sequential=0.9", "strategy=finetune", "strategy.stage.max_epochs=1",
                 f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'logs'}"]
    summary = train(compose(overrides, output_dir=tmp_path / "run"))
    assert 0.0 < summary["test/target/ndcg@10"] < 1.0
    assert (tmp_path / "cache" / "stage").is_dir()  # the source stage trained on the source-side users


class _FeatureTower(torch.nn.Module):
    """A stand-in content tower: fixed item features [num, F] through a trainable linear adaptor."""

    def __init__(self, features: torch.Tensor, dim: int) -> None:
        super().__init__()
        self.features, self.adaptor = features, torch.nn.Linear(features.shape[1], dim)
        self.num = features.shape[0]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.adaptor(self.features[items])

    def all(self) -> torch.Tensor:
        return self.adaptor(self.features)


def test_joint_built_from_python_follows_the_model_s_item_tower() -> None:
    p = prepare(_synthetic(), "target", ["source"], split=DisjointUsers(), seed=1)
    facts = DataFacts.of(p)
    items = {d: p.num_items(d) for d in p.domains}
    plain = matrix_factorization(p.num_users, items, 4)
    assert model_item_tower(plain, "target") == "id"
    with pytest.raises(ConfigError, match="Joint reads user vectors .*model.content.item_tower='id'"):
        Joint(plain, "target", ["source"], facts=facts)
    content = matrix_factorization(p.num_users, items, 4)
    content.item_encoders["target"] = _FeatureTower(torch.randn(p.num_items("target"), 3), 4)
    assert model_item_tower(content, "target") == "content"
    Joint(content, "target", ["source"], facts=facts)  # a content tower bridges: accepted
