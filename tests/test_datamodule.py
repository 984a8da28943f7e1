"""CrossDomainDataModule, TrainBatches, EvalRows and ShardSampler on tiny prepared data."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from translearn.data.datamodule import CrossDomainDataModule, EvalRows, ShardSampler, TrainBatches
from translearn.data.prepare import prepare
from translearn.data.prepared import PreparedData
from translearn.data.preprocess import Deduplicate
from translearn.data.sources import SyntheticSource
from translearn.data.splits import TEST, TRAIN, VALID

T, V, X = TRAIN, VALID, TEST


@pytest.fixture(scope="module")
def synthetic() -> PreparedData:
    source = SyntheticSource(num_users=150, num_items=(60, 40), interactions_per_user=(8.0, 5.0), num_topics=4,
                             words_per_topic=5, words_per_item=4)
    return prepare(source, "target", ["source"], preprocess={"dedup": Deduplicate()})


@pytest.fixture
def hand(tiny_data) -> PreparedData:
    """tiny_data's target with roles set by hand (users u1 u2 u3 u5 = 0 1 2 4; items v w x y z = 0..4):

    row:   0  1  2 | 3  4  5  6 | 7  8  9 | 10 11 12
    user:  u1       | u2          | u3      | u5
    item:  x  y  z  | x  w  y  v  | z  x  w | v  w  y
    rating 1  2  3  | 4  5  1  2  | 3  4  5 | 1  2  3
    role:  T  V  V  | T  T  X  X  | T  V  X | V  X  X      (u5 has no training row)
    """
    roles = np.array([T, V, V, T, T, X, X, T, V, X, V, X, X], dtype=np.int8)
    return PreparedData(tiny_data, "t", ("s",), roles)


def train_pairs(prepared, domain):
    inter = prepared.train(domain)
    return list(zip(inter.users.tolist(), inter.items.tolist(), strict=True))


def epoch(prepared, domains, batch_size, num_negatives=2, seed=0):
    dm = CrossDomainDataModule(prepared, domains, batch_size=batch_size, num_negatives=num_negatives, seed=seed)
    return list(dm.train_dataloader())


# ---------------------------------------------------------------- training batches

@pytest.mark.parametrize("domains", [["target", "source"], ["source", "target"], ["target"]])
def test_one_epoch_covers_every_anchor_row_once(synthetic, domains):
    batches = epoch(synthetic, domains, batch_size=64)
    anchor = "source" if "source" in domains else "target"  # the domain with the most training rows
    assert len(synthetic.train("source")) > len(synthetic.train("target"))
    seen = [pair for b in batches
            for pair in zip(b[anchor]["users"].tolist(), b[anchor]["items"].tolist(), strict=True)]
    assert Counter(seen) == Counter(train_pairs(synthetic, anchor))
    assert len(batches) == math.ceil(len(synthetic.train(anchor)) / 64)
    assert all(set(b) == set(domains) for b in batches)


def test_other_domains_are_proportional_and_seen_about_once(synthetic):
    # the sparse target rides along with the larger source, which sets the epoch
    n_anchor, n_target = len(synthetic.train("source")), len(synthetic.train("target"))
    batches = epoch(synthetic, ["target", "source"], batch_size=50)
    for b in batches:
        b_anchor = len(b["source"]["users"])
        assert len(b["target"]["users"]) == math.ceil(b_anchor * n_target / n_anchor)
        assert len(b["target"]["items"]) == len(b["target"]["negatives"]) == len(b["target"]["users"])
    seen = Counter(pair for b in batches
                   for pair in zip(b["target"]["users"].tolist(), b["target"]["items"].tolist(), strict=True))
    assert set(seen) == set(train_pairs(synthetic, "target"))  # every target row at least once ...
    assert max(seen.values()) <= 2  # ... and no row more than twice


def test_batch_sizes_by_hand(hand):
    # s has 6 training rows and anchors; t has 4: two batches of 3 s rows take ceil(3*4/6) = 2 t rows each
    sizes = sorted((len(b["t"]["users"]), len(b["s"]["users"])) for b in epoch(hand, ["t", "s"], batch_size=3))
    assert sizes == [(2, 3), (2, 3)]


def test_negatives_are_never_training_positives(synthetic):
    for num_negatives in (1, 4):
        batches = epoch(synthetic, ["target", "source"], batch_size=32, num_negatives=num_negatives, seed=5)
        for d in ("target", "source"):
            positives = set(train_pairs(synthetic, d))
            for b in batches:
                neg = b[d]["negatives"]
                assert neg.dtype == torch.int64 and neg.shape == (len(b[d]["users"]), num_negatives)
                users = b[d]["users"].tolist()
                assert all((u, i) not in positives for u, row in zip(users, neg.tolist(), strict=True) for i in row)
                assert int(neg.min()) >= 0 and int(neg.max()) < synthetic.num_items(d)


def test_batch_ratings_follow_rows(hand):
    rating = {}
    inter = hand.data.domain("t").interactions
    for u, i, r in zip(inter.users.tolist(), inter.items.tolist(), inter.ratings.tolist(), strict=True):
        rating[(u, i)] = r
    for b in epoch(hand, ["t"], batch_size=3, num_negatives=0):
        assert "negatives" not in b["t"]
        got = list(zip(b["t"]["users"].tolist(), b["t"]["items"].tolist(), b["t"]["ratings"].tolist(), strict=True))
        assert all(rating[(u, i)] == r for u, i, r in got)


def test_train_batches_need_training_rows(hand):
    empty = PreparedData(hand.data, "t", ("s",), np.full(13, V, dtype=np.int8))
    with pytest.raises(ValueError, match="domain 't' has no training interactions"):
        TrainBatches(empty, ["t"], 1, 0)


def test_datamodule_arguments(hand):
    with pytest.raises(ValueError, match="batch sizes"):
        CrossDomainDataModule(hand, batch_size=0)
    with pytest.raises(ValueError, match="num_negatives"):
        CrossDomainDataModule(hand, num_negatives=-1)
    with pytest.raises(KeyError, match="unknown domain 'zz'"):
        CrossDomainDataModule(hand, ["t", "zz"])
    assert CrossDomainDataModule(hand).train_domains == ["t"]


# ---------------------------------------------------------------- evaluation rows

def eval_batches(prepared, role, batch_size=2):
    dm = CrossDomainDataModule(prepared, eval_batch_size=batch_size)
    return list(dm.val_dataloader() if role == "valid" else dm.test_dataloader())


# per role: user -> ({held-out item: rating}, {items to exclude})
EXPECTED = {
    "valid": {0: ({3: 2, 4: 3}, {2}), 2: ({2: 4}, {4}), 4: ({0: 1}, set())},
    "test": {1: ({3: 1, 0: 2}, {2, 1}), 2: ({1: 5}, {4, 2}), 4: ({1: 2, 3: 3}, {0})},
}


@pytest.mark.parametrize("role", ["valid", "test"])
def test_eval_rows_full_ranking(hand, role):
    got = {}
    for b in eval_batches(hand, role):
        users = b["users"].tolist()
        targets, ratings = b["targets"], b["ratings"]
        assert targets.shape == ratings.shape == (len(users), targets.shape[1])
        for k, u in enumerate(users):
            row = targets[k].tolist()
            n = sum(t != -1 for t in row)
            assert row[n:] == [-1] * (len(row) - n)  # padding only at the end
            assert torch.isnan(ratings[k, n:]).all()
            held = {t: ratings[k, j].item() for j, t in enumerate(row[:n])}
            exclude = {c for r, c in zip(b["exclude_rows"].tolist(), b["exclude_cols"].tolist(), strict=True)
                       if r == k}
            got[u] = (held, exclude)
    assert got == EXPECTED[role]


def test_eval_rows_width_is_the_batch_maximum(hand):
    rows = EvalRows(hand, "valid")
    # users 2 and 4 hold out one item each, user 0 two: fewest first, so batches pad little
    assert rows.row_users.tolist() == [2, 4, 0]
    assert rows.__getitems__([0, 1])["targets"].tolist() == [[2], [0]]
    assert rows.__getitems__([2])["targets"].shape == (1, 2)
    assert rows.__getitems__([1, 2])["targets"].shape == (2, 2)


def test_eval_rows_sampled_protocol(hand):
    negatives = {"valid": np.array([[0, 1], [0, 1], [3, 0], [2, 3]]), "test": np.array([[2, 4]] * 6)}
    sampled = PreparedData(hand.data, "t", ("s",), hand.roles, negatives)
    rows = EvalRows(sampled, "valid")
    assert len(rows) == 4  # one row per held-out interaction: rows 1, 2, 8, 10
    b = rows.__getitems__([0, 1, 2, 3])
    assert b["users"].tolist() == [0, 0, 2, 4]
    assert b["candidates"].tolist() == [[3, 0, 1], [4, 0, 1], [2, 3, 0], [0, 2, 3]]
    assert b["targets"].tolist() == [[0], [0], [0], [0]]
    assert b["ratings"].tolist() == [[2], [3], [4], [1]]
    test = EvalRows(sampled, "test").__getitems__([1, 3])
    assert test["candidates"][:, 0].tolist() == [0, 1]  # held-out items of test rows 6 (u2, v) and 11 (u5, w)


@pytest.mark.parametrize("n", [5, 6, 1])
def test_shard_sampler_covers_each_row_once(n):
    data = list(range(n))
    shards = [list(ShardSampler(data, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data
    assert not set(shards[0]) & set(shards[1])
    assert [len(ShardSampler(data, 2, r)) for r in (0, 1)] == [len(s) for s in shards]


def test_shard_sampler_over_eval_rows(synthetic):
    rows = EvalRows(synthetic, "test")
    users = []
    for rank in (0, 1):
        loader = torch.utils.data.DataLoader(rows, batch_size=16, sampler=ShardSampler(rows, 2, rank),
                                             collate_fn=lambda b: b)
        users += [u for b in loader for u in b["users"].tolist()]
    assert sorted(users) == rows.row_users.tolist() and len(set(users)) == len(users)
