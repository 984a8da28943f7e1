"""LightGCN and the model context: the training-only graph, propagation (by hand and against a dense
reference), encode once, the L2 term, which strategies take it, and a run through translearn-train."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from translearn.data.prepare import prepare
from translearn.data.preprocess import Deduplicate
from translearn.data.sources import SyntheticSource
from translearn.data.splits import TRAIN
from translearn.errors import ConfigError
from translearn.losses import BPRLoss
from translearn.models.context import ModelContext
from translearn.models.factory import call_factory
from translearn.models.lightgcn import LightGCN, lightgcn, normalized_adjacency
from translearn.strategies import FineTune, Joint, TargetOnly

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def synthetic():
    source = SyntheticSource(num_users=60, num_items=(30, 20), interactions_per_user=(6.0, 5.0), num_topics=3,
                             words_per_topic=4, words_per_item=3)
    return prepare(source, "target", ["source"], preprocess={"dedup": Deduplicate()})


def _held_out_edges(prepared, graph, domain) -> int:
    """How many of ``domain``'s non-training (user, item) pairs are edges of ``graph``."""
    inter = prepared.data.domain(domain).interactions
    held = prepared.role_of(domain) != TRAIN
    dense = graph.to_dense()
    return int(dense[torch.from_numpy(inter.users[held]), torch.from_numpy(inter.items[held])].sum())


def _held_out_pairs_not_trained(prepared, domain) -> np.ndarray:
    """Held-out (user, item) pairs of ``domain`` that are not also a training pair (a repeat would be an edge
    legitimately, through its training row)."""
    inter = prepared.data.domain(domain).interactions
    n = prepared.num_items(domain)
    train = prepared.role_of(domain) == TRAIN
    train_keys = np.unique(inter.users[train] * n + inter.items[train])
    held_keys = inter.users[~train] * n + inter.items[~train]
    return held_keys[~np.isin(held_keys, train_keys)]


def test_context_graph_is_the_training_rows_only(synthetic):
    ctx = ModelContext.of(synthetic, ["target", "source"])
    for domain in ("target", "source"):
        graph = ctx.graph(domain)
        train = synthetic.train(domain)
        n = synthetic.num_items(domain)
        assert graph.shape == (synthetic.num_users, n)
        assert graph._nnz() == len(np.unique(train.users * n + train.items))  # distinct training pairs
        assert ctx.graph(domain) is graph  # built once
    assert len(_held_out_pairs_not_trained(synthetic, "target")) > 0
    assert _held_out_edges(synthetic, ctx.graph("target"), "target") == _repeats(synthetic, "target")
    both = ctx.shared_users()
    assert np.array_equal(both, np.intersect1d(synthetic.train("target").users, synthetic.train("source").users))


def _repeats(prepared, domain) -> int:
    inter = prepared.data.domain(domain).interactions
    held = prepared.role_of(domain) != TRAIN
    return int((~np.isin(inter.users[held] * prepared.num_items(domain) + inter.items[held],
                         _held_out_pairs_not_trained(prepared, domain))).sum())


def test_model_trained_on_the_graph_cannot_see_a_held_out_item(synthetic):
    """The adjacency the model propagates over has no held-out pair, and changing a held-out row changes nothing."""
    model = call_factory(lightgcn, context=ModelContext.of(synthetic, ["target"]), num_users=synthetic.num_users,
                         num_items={"target": synthetic.num_items("target")})
    adj = model.graphs["target"].adjacency.to_dense()
    u = synthetic.num_users
    for key in _held_out_pairs_not_trained(synthetic, "target"):
        user, item = divmod(int(key), synthetic.num_items("target"))
        assert adj[user, u + item] == 0 and adj[u + item, user] == 0


def test_propagation_by_hand():
    """2 users, 2 items, R = [[1, 1], [0, 1]], 1-d embeddings u = (1, 2), i = (3, 4), one layer."""
    graph = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).to_sparse()
    model = LightGCN(2, {"t": graph}, embedding_dim=1, num_layers=1)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item_encoder("t").weight.copy_(torch.tensor([[3.0], [4.0]]))
    r2 = math.sqrt(2)
    # degrees: u0 2, u1 1, i0 1, i1 2; edge weights 1/sqrt(d_u d_i): u0-i0 1/r2, u0-i1 1/2, u1-i1 1/r2
    users = [(1 + 3 / r2 + 4 / 2) / 2, (2 + 4 / r2) / 2]
    items = [(3 + 1 / r2) / 2, (4 + 1 / 2 + 2 / r2) / 2]
    got_u, got_i = model.encode("t")
    assert torch.allclose(got_u.squeeze(1), torch.tensor(users))
    assert torch.allclose(got_i.squeeze(1), torch.tensor(items))
    score = model.score("t", torch.tensor([0]), torch.tensor([1]))
    assert score.item() == pytest.approx(users[0] * items[1], rel=1e-6)
    assert torch.allclose(model.score_all("t", torch.tensor([0, 1])),
                          torch.tensor(users)[:, None] * torch.tensor(items)[None, :])


def test_propagation_equals_a_dense_reference():
    gen = torch.Generator().manual_seed(0)
    r = (torch.rand(7, 5, generator=gen) < 0.4).float()
    r[6] = 0  # a user without edges keeps its ego embedding / (K + 1)
    model = LightGCN(7, {"t": r.to_sparse()}, embedding_dim=4, num_layers=3)
    a = torch.zeros(12, 12)
    a[:7, 7:], a[7:, :7] = r, r.T
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros(()))
    norm = inv[:, None] * a * inv[None, :]
    assert torch.allclose(normalized_adjacency(r.to_sparse()).to_dense(), norm)
    ego = torch.cat([model.user_encoder.weight, model.item_encoder("t").weight]).detach()
    layers, x = [ego], ego
    for _ in range(3):
        x = norm @ x
        layers.append(x)
    ref = torch.stack(layers).mean(0)
    users, items = model.encode("t")
    assert torch.allclose(torch.cat([users, items]), ref, atol=1e-6)
    assert torch.allclose(users[6], ego[6] / 4)


def _counting(model):
    calls = []
    real = model.propagate

    def propagate(domain):
        calls.append(domain)
        return real(domain)

    model.propagate = propagate
    return calls


def test_encode_once_per_training_step_and_per_evaluation_pass():
    r = (torch.rand(6, 5, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    model = LightGCN(6, {"t": r.to_sparse(), "s": r[:, :3].to_sparse()}, embedding_dim=4, num_layers=2)
    calls = _counting(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)  # fused Adam does not bump version counters
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([[1], [2], [0]])
    part = {"users": users, "items": pos, "negatives": neg}
    loss = 0
    for domain in ("t", "s"):  # a joint step: each domain's graph propagated once
        p, n = model.score_pos_neg(domain, part, pos, neg)
        loss = loss + BPRLoss()(p, n) + model.regularization(domain, part)
        model.score(domain, users, pos)
    assert calls == ["t", "s"]
    loss.backward()
    assert model.user_encoder.weight.grad is not None and model.item_encoder("s").weight.grad is not None
    opt.step()
    calls.clear()
    with torch.no_grad():  # an evaluation pass: every batch reads one propagation
        first = model.score_all("t", torch.tensor([0, 1]))
        for batch in (torch.tensor([2, 3]), torch.tensor([4, 5])):
            model.score_all("t", batch)
            model.score("t", batch, torch.tensor([[0, 1], [2, 3]]))
    assert calls == ["t"]
    opt.zero_grad()
    model.score_pos_neg("t", part, pos, neg)[0].sum().backward()
    opt.step()  # the step invalidates the tables
    with torch.no_grad():
        assert not torch.equal(model.score_all("t", torch.tensor([0, 1])), first)
    assert calls == ["t", "t", "t"]


def test_regularization_is_the_papers_l2_on_ego_embeddings():
    model = LightGCN(3, {"t": torch.eye(3).to_sparse()}, embedding_dim=2, num_layers=1, reg_weight=0.5)
    part = {"users": torch.tensor([0, 2]), "items": torch.tensor([1, 1]), "negatives": torch.tensor([[0], [2]])}
    u, v = model.user_encoder.weight.detach(), model.item_encoder("t").weight.detach()
    expected = 0.5 / 2 * (u[[0, 2]].pow(2).sum() + v[[1, 1]].pow(2).sum() + v[[0, 2]].pow(2).sum()) / 2
    assert model.regularization("t", part).item() == pytest.approx(expected.item())
    assert LightGCN(3, {"t": torch.eye(3).to_sparse()}, reg_weight=0.0).regularization("t", part) is None


def test_factory_needs_the_context_and_strategies_take_it_or_refuse_in_one_line(hand_facts):
    with pytest.raises(ConfigError, match="training graph"):
        lightgcn(num_users=3, num_items={"t": 2})
    graph = torch.ones(4, 3).to_sparse()
    model = LightGCN(4, {"t": graph, "s": graph})
    assert model.reads == {"graph"}
    assert TargetOnly.refuses_model(model) is None and Joint.refuses_model(model) is None
    why = FineTune.refuses_model(model)
    assert "source-stage model" in why and "\n" not in why
    with pytest.raises(ConfigError, match="source-stage model"):
        FineTune(model, "t", ["s"], source_model=model, facts=hand_facts(4, 3))


@pytest.mark.parametrize("strategy", ["target_only", "joint"])
def test_train_cli_runs_lightgcn(strategy, run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", ["model=lightgcn", f"strategy={strategy}", "trainer.max_epochs=1",
                                        *run_overrides, "logger=csv", f"hydra.run.dir={tmp_path / 'run'}"],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ndcg@10" in done.stdout


def test_finetune_refuses_lightgcn_before_training(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", ["model=lightgcn", "strategy=finetune", *run_overrides,
                                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode != 0
    assert "source-stage model" in done.stderr and "stage epoch" not in done.stderr


@pytest.mark.skipif(not (DATA_ROOT / "amazon-arts-office").is_dir(), reason="real data amazon-arts-office absent")
def test_real_arts_office_graph_has_no_held_out_edge(tmp_path):
    """The Arts -> Office leave-one-out split: no held-out Office (user, item) pair is an edge of the graph."""
    from translearn.build import build_context, build_run_data
    from translearn.cli.config import compose

    cfg = compose(["data=arts_office", f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={tmp_path / 'cache'}"],
                  output_dir=tmp_path)
    prepared = build_run_data(cfg)
    ctx = build_context(cfg, prepared, [prepared.target, *prepared.sources])
    graph = ctx.graph(prepared.target).coalesce()
    n = prepared.num_items(prepared.target)
    users, items = graph.indices().numpy()
    edges = users * n + items
    held = _held_out_pairs_not_trained(prepared, prepared.target)
    assert len(held) > 1000 and not np.isin(held, edges).any()
    assert len(edges) == len(np.unique(prepared.train(prepared.target).users * n
                                        + prepared.train(prepared.target).items))
    assert ctx.graph("arts")._nnz() > 0  # the source's rows are all training rows


def test_initialisation_is_xavier_normal_unless_init_std_is_given():
    graph = torch.zeros(2000, 500).to_sparse()
    model = LightGCN(2000, {"t": graph}, embedding_dim=64)
    assert model.user_encoder.weight.std().item() == pytest.approx(math.sqrt(2 / 2064), rel=0.05)
    assert model.item_encoder("t").weight.std().item() == pytest.approx(math.sqrt(2 / 564), rel=0.05)
    assert LightGCN(2000, {"t": graph}, init_std=0.1).user_encoder.weight.std().item() == pytest.approx(0.1, rel=0.05)


def test_call_factory_passes_the_context_only_to_factories_that_name_it():
    ctx = ModelContext(3, {"t": 2}, items="catalog", train_rows={"t": ([0, 1], [1, 0])})
    got = {}

    def old(num_users, num_items):  # an older user factory: neither items nor context
        got["old"] = (num_users, dict(num_items))

    def with_items(num_users, num_items, items=None):
        got["items"] = items

    def with_context(num_users, num_items, context=None):
        got["context"] = context

    for factory in (old, with_items, with_context):
        call_factory(factory, context=ctx, num_users=3, num_items={"t": 2})
    assert got == {"old": (3, {"t": 2}), "items": "catalog", "context": ctx}
    assert ctx.graph("t").to_dense().tolist() == [[0, 1], [1, 0], [0, 0]]
    with pytest.raises(KeyError, match="no domain 's'"):
        ctx.graph("s")
