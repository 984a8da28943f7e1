"""HistoryIndex: token space, the no-peeking cut rule, training sequences and their batches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from translearn.data.history import HistoryError, HistoryIndex
from translearn.data.prepare import prepare
from translearn.data.sequence_batches import BucketBatchSampler, SequenceBatches, bucket_batches
from translearn.data.sources.synthetic import SyntheticSource
from translearn.data.splits import TEST, TRAIN, VALID, ColdStartUsers, LeaveOneOut, RatioSplit

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
ARTS_OFFICE = DATA_ROOT / "amazon-arts-office" / "raw"


@pytest.fixture
def interleaved(make_data, static_source):
    """u1: target x1 y3 z5 w7 (LOO: z valid, w test), source a2 b5 c6 d7 e8 (b ties z, d ties w).
    u2: target p1 q2 r2 (q and r tie at 2), source a1. u3: target x1 y2 (train + test), no source."""
    data = make_data(
        s=dict(users=["u1"] * 5 + ["u2"], items=["a", "b", "c", "d", "e", "a"], order=[2, 5, 6, 7, 8, 1],
               catalog=["a", "b", "c", "d", "e"]),
        t=dict(users=["u1"] * 4 + ["u2"] * 3 + ["u3"] * 2, items=["x", "y", "z", "w", "p", "q", "r", "x", "y"],
               order=[1, 3, 5, 7, 1, 2, 2, 1, 2], catalog=["p", "q", "r", "w", "x", "y", "z"]),
    )
    return prepare(static_source(data, "interleaved"), target="t", sources=["s"], split=LeaveOneOut())


def _tok(index: HistoryIndex, prepared, domain: str, raw: str) -> int:
    item = int(np.flatnonzero(prepared.data.domain(domain).item_ids == raw)[0])
    return int(index.items_to_tokens(domain, np.array([item]))[0])


def _user(prepared, raw: str) -> int:
    return int(np.flatnonzero(prepared.data.user_ids == raw)[0])


def _query(queries, user: int) -> list[int]:
    rows = np.flatnonzero(queries.users == user)
    assert len(rows) == 1
    return queries.history[rows[0], : queries.lengths[rows[0]]].tolist()


def test_token_space_puts_sources_first_and_target_last(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="all")
    assert index.domains == ("s", "t")
    assert index.offsets == {"s": 0, "t": 5}
    assert index.num_tokens == 1 + 5 + 7
    assert _tok(index, interleaved, "s", "a") == 1 and _tok(index, interleaved, "t", "p") == 6
    tokens = np.array([0, 1, 5, 6, 12])
    assert index.tokens_to_items("t", tokens).tolist() == [-1, -1, -1, 0, 6]
    assert index.tokens_to_items("s", torch.from_numpy(tokens)).tolist() == [-1, 0, 4, -1, -1]
    only = HistoryIndex(interleaved, scope="target")
    assert only.domains == ("t",) and only.offsets == {"t": 0} and only.num_tokens == 8
    with pytest.raises(HistoryError, match="history_scope"):
        HistoryIndex(interleaved, scope="both")


def test_queries_cut_interleaved_history_before_the_target(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="all")
    t = {raw: _tok(index, interleaved, d, raw) for d, raws in (("s", "abcde"), ("t", "xyzw")) for raw in raws}
    u1 = _user(interleaved, "u1")
    valid, test = index.eval_queries("valid", 50), index.eval_queries("test", 50)
    # valid z@5: target train rows before it (x1, y3) and source rows strictly before 5 (a2; b5 ties)
    assert _query(valid, u1) == [t["x"], t["a"], t["y"]]
    # test w@7: x1 a2 y3, the valid z5 (then b5: at equal keys the target comes first), c6; not d7 (tie), e8
    assert _query(test, u1) == [t["x"], t["a"], t["y"], t["z"], t["b"], t["c"]]
    rows = np.flatnonzero(test.users == u1)
    assert test.history_domain[rows[0], :6].tolist() == [1, 0, 1, 1, 0, 0]
    assert test.targets[rows[0]] == np.flatnonzero(interleaved.data.domain("t").item_ids == "w")[0]
    target_only = HistoryIndex(interleaved, scope="target")
    assert _query(target_only.eval_queries("valid", 50), u1) == [t["x"] - 5, t["y"] - 5]
    assert _query(target_only.eval_queries("test", 50), u1) == [t["x"] - 5, t["y"] - 5, t["z"] - 5]


def test_valid_item_is_history_at_test_time_but_not_the_reverse_even_when_tied(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="target")
    u2 = _user(interleaved, "u2")
    inter = interleaved.data.domain("t").interactions
    mine = inter.users == u2
    valid_tok = int(inter.items[mine & (interleaved.roles == VALID)][0]) + 1
    test_tok = int(inter.items[mine & (interleaved.roles == TEST)][0]) + 1
    p_tok = _tok(index, interleaved, "t", "p")
    assert {valid_tok, test_tok} == {_tok(index, interleaved, "t", "q"), _tok(index, interleaved, "t", "r")}
    assert _query(index.eval_queries("valid", 50), u2) == [p_tok]
    assert _query(index.eval_queries("test", 50), u2) == [p_tok, valid_tok]
    # scope all: u2's source a1 has a key below both tied targets, so both queries see it
    both = HistoryIndex(interleaved, scope="all")
    assert _query(both.eval_queries("valid", 50), u2) == [_tok(both, interleaved, "t", "p"),
                                                         _tok(both, interleaved, "s", "a")]


def test_max_len_keeps_the_latest_items(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="all")
    t = {raw: _tok(index, interleaved, "s", raw) for raw in "abc"}
    queries = index.eval_queries("test", 2)
    assert queries.history.shape[1] == 2
    assert _query(queries, _user(interleaved, "u1")) == [t["b"], t["c"]]
    batch = queries.batch(np.arange(len(queries)))
    assert set(batch) == {"users", "targets", "history", "history_domain", "history_len"}
    assert batch["history_len"].max() == 2


def test_training_sequences_hold_training_rows_only(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="all")
    seq = index.train_sequences(max_len=50)
    t = {raw: _tok(index, interleaved, d, raw) for d, raws in (("s", "abcde"), ("t", "xyzwpqr")) for raw in raws}
    u1 = _user(interleaved, "u1")
    s = int(np.flatnonzero(seq.users == u1)[0])
    assert seq.tokens[seq.indptr[s] : seq.indptr[s + 1]].tolist() == [t[c] for c in "xaybcde"]
    # no held-out target (user, item) anywhere in training, as input or label
    inter = interleaved.data.domain("t").interactions
    held = set(zip(inter.users[interleaved.roles != TRAIN].tolist(),
                   (inter.items[interleaved.roles != TRAIN] + index.offsets["t"] + 1).tolist(), strict=True))
    seq_users = np.repeat(seq.users, seq.lengths)
    assert not held & set(zip(seq_users.tolist(), seq.tokens.tolist(), strict=True))
    # u3 has one training row in t and no source rows: no sequence
    assert _user(interleaved, "u3") not in seq.users.tolist()
    only_t = HistoryIndex(interleaved, scope="target").train_sequences(max_len=50)
    assert set(only_t.domain.tolist()) == {0}
    source_only = index.train_sequences(max_len=50, domains=["s"])
    assert set(source_only.domain.tolist()) == {0} and len(source_only.tokens) == 5  # u2 has one source row


def test_long_sequences_last_or_windows(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="all")
    t = {raw: _tok(index, interleaved, d, raw) for d, raws in (("s", "abcde"), ("t", "xy")) for raw in raws}
    u1 = _user(interleaved, "u1")

    def rows(seq) -> list[list[int]]:
        return [seq.tokens[seq.indptr[s] : seq.indptr[s + 1]].tolist() for s in np.flatnonzero(seq.users == u1)]

    assert rows(index.train_sequences(max_len=3)) == [[t[c] for c in "bcde"]]
    # windows of 4 rows overlapping by one, cut from the end: every one of the 6 labels trained once
    assert rows(index.train_sequences(max_len=3, long="windows")) == [[t[c] for c in "bcde"], [t[c] for c in "xayb"]]


def test_ratio_split_gets_one_cut_per_held_out_row(make_data, static_source) -> None:
    data = make_data(t=dict(users=["u"] * 8, items=list("abcdefgh"), order=[1, 2, 3, 4, 5, 6, 7, 8]))
    prepared = prepare(static_source(data, "ratio"), target="t", split=RatioSplit((0.5, 0.25, 0.25), temporal=True))
    assert prepared.roles.tolist() == [TRAIN] * 4 + [VALID] * 2 + [TEST] * 2
    index = HistoryIndex(prepared, scope="target")
    valid, test = index.eval_queries("valid", 50), index.eval_queries("test", 50)
    assert valid.targets.tolist() == [4, 5] and test.targets.tolist() == [6, 7]
    for r in range(2):  # each valid row: the 4 train rows, not the other valid row
        assert valid.history[r, : valid.lengths[r]].tolist() == [1, 2, 3, 4]
        # each test row: train rows and both valid rows, never the other test row
        assert test.history[r, : test.lengths[r]].tolist() == [1, 2, 3, 4, 5, 6]


def test_cold_start_users_see_only_their_earlier_source_rows(make_data, static_source) -> None:
    users = [f"u{k}" for k in range(4)]
    data = make_data(s=dict(users=[u for u in users for _ in range(3)], items=["a", "b", "c"] * 4, order=[2, 4, 6] * 4),
                     t=dict(users=[u for u in users for _ in range(3)], items=["x", "y", "z"] * 4, order=[1, 3, 5] * 4))
    prepared = prepare(static_source(data, "cold"), target="t", sources=["s"], split=ColdStartUsers(0.5, 0.5))
    index = HistoryIndex(prepared, scope="all")
    a, b = (_tok(index, prepared, "s", raw) for raw in "ab")
    for role in ("valid", "test"):
        q = index.eval_queries(role, 50)
        assert len(q) == 3 and len(set(q.users.tolist())) == 1  # one held-out user, one query per target row
        by_target = {int(t): q.history[r, : q.lengths[r]].tolist() for r, t in enumerate(q.targets)}
        assert by_target == {0: [], 1: [a], 2: [a, b]}  # x1 sees nothing, y3 sees a2, z5 sees a2 b4
    assert HistoryIndex(prepared, scope="target").eval_queries("test", 50).lengths.tolist() == [0, 0, 0]


def test_missing_order_key_is_a_clear_error(make_data, static_source) -> None:
    data = make_data(t=dict(users=["u"] * 3, items=["a", "b", "c"]))
    prepared = prepare(static_source(data, "no-order"), target="t")
    with pytest.raises(HistoryError, match="order key.*'t'"):
        HistoryIndex(prepared)


def test_sequence_batches_shift_labels_and_trim_padding(interleaved) -> None:
    index = HistoryIndex(interleaved, scope="all")
    seq = index.train_sequences(max_len=50)
    data = SequenceBatches(seq)
    u1, u2 = _user(interleaved, "u1"), _user(interleaved, "u2")
    i1, i2 = int(np.flatnonzero(seq.users == u1)[0]), int(np.flatnonzero(seq.users == u2)[0])
    batch = data.__getitems__([i2, i1])
    assert batch["history"].shape == (2, 6) and batch["history_len"].tolist() == [1, 6]
    tok = seq.tokens[seq.indptr[i1] : seq.indptr[i1 + 1]]
    assert batch["history"][1].tolist() == tok[:-1].tolist()
    s_items = interleaved.data.domain("s").item_ids.tolist()
    assert batch["labels"][1].tolist() == [s_items.index("a"), 5, s_items.index("b"), s_items.index("c"),
                                           s_items.index("d"), s_items.index("e")]  # y is target item 5
    assert batch["label_domain"][1].tolist() == [0, 1, 0, 0, 0, 0]
    # u2's sequence p1 a1 (a target first at the tie): one input p, label a; then padding
    assert batch["history"][0].tolist() == [_tok(index, interleaved, "t", "p"), 0, 0, 0, 0, 0]
    assert batch["labels"][0].tolist() == [s_items.index("a"), -1, -1, -1, -1, -1]
    assert batch["label_domain"][0, 1:].eq(-1).all()


def test_bucket_sampler_is_deterministic_covers_all_and_trims() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 51, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=64, seed=3)
    first = list(sampler)
    assert first == list(sampler)  # same (seed, epoch)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert len(first) == len(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    padded = sum(len(b) * lengths[b].max() for b in first)
    random_batches = [np.arange(1000)[i : i + 64] for i in range(0, 1000, 64)]
    assert padded < 0.75 * sum(len(b) * lengths[b].max() for b in random_batches)
    # DDP: two ranks, same number of batches, together they cover every index
    ranks = [list(BucketBatchSampler(lengths, 64, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 8
    assert {i for r in ranks for b in r for i in b} == set(range(1000))
    assert len(bucket_batches(lengths, 64, np.random.default_rng(0))) == 16


def test_dataloader_feeds_whole_batches(interleaved) -> None:
    seq = HistoryIndex(interleaved, scope="all").train_sequences(max_len=50)
    data = SequenceBatches(seq)
    loader = DataLoader(data, batch_sampler=BucketBatchSampler(data.lengths, 2, seed=0), collate_fn=lambda b: b)
    batches = list(loader)
    assert sum(len(b["users"]) for b in batches) == len(seq)
    assert all(b["history"].shape == b["labels"].shape for b in batches)


def test_lightning_sets_the_epoch_of_the_bucket_sampler() -> None:
    import pytorch_lightning as pl

    prepared = prepare(SyntheticSource(num_users=100, num_items=(30, 20)), target="target", sources=["source"])
    seq = HistoryIndex(prepared, scope="all").train_sequences(max_len=50)
    data = SequenceBatches(seq)
    seen: list[list[int]] = []

    class Record(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            seen.append(batch["users"].tolist())
            return self.w.sum() * 0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    sampler = BucketBatchSampler(data.lengths, 16, seed=5)
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=lambda b: b)
    pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(Record(), loader)
    expected = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        expected += [[int(seq.users[i]) for i in b] for b in sampler]
    assert sampler.sampler is sampler and seen == expected and expected[: len(sampler)] != expected[len(sampler) :]


def test_synthetic_index_end_to_end() -> None:
    prepared = prepare(SyntheticSource(num_users=200, num_items=(50, 40)), target="target", sources=["source"])
    index = HistoryIndex(prepared, scope="all")
    queries = index.eval_queries("test", 20)
    assert len(queries) == int((prepared.roles == TEST).sum())
    assert (queries.lengths <= 20).all() and (queries.history[:, :1] > 0).any()


# ---------------------------------------------------------------- real data: Amazon Arts <-> Office

@pytest.fixture(scope="module")
def arts_office():
    if not ARTS_OFFICE.is_dir():
        pytest.skip(f"Arts/Office data not found at {ARTS_OFFICE} (set TRANSLEARN_DATA_ROOT to the shared data folder)")
    from translearn.data import Deduplicate
    from translearn.data.sources import AmazonArtsOffice
    prepared = prepare(AmazonArtsOffice(root=str(ARTS_OFFICE)), target="office", sources=["arts"],
                       preprocess={"dedup": Deduplicate()})
    return prepared, HistoryIndex(prepared, scope="all")


def test_arts_office_no_held_out_office_item_in_training(arts_office) -> None:
    prepared, index = arts_office
    seq = index.train_sequences(max_len=50, long="windows")
    inter = prepared.data.domain("office").interactions
    held = prepared.roles != TRAIN
    width = index.num_tokens
    keys = inter.users * width + inter.items + index.offsets["office"] + 1
    assert len(np.unique(keys)) == len(keys)  # deduplicated: a (user, item) pair is one row and one role
    train_keys = np.repeat(seq.users, seq.lengths) * width + seq.tokens
    assert held.sum() > 19000 and not np.isin(keys[held], train_keys).any()
    assert np.isin(keys[~held], train_keys).mean() > 0.99  # and the training rows are there
    assert len(seq) > 9000


def test_arts_office_query_source_items_come_before_the_target(arts_office) -> None:
    prepared, index = arts_office
    inter = prepared.data.domain("office").interactions
    arts_order = prepared.data.domain("arts").interactions
    for role in ("valid", "test"):
        q = index.eval_queries(role, 50)
        target_order = inter.order[q.target_rows]
        # order key of every history position, looked up from the index rows of the query's user
        is_arts = (q.history_domain == index.domain_id("arts")) & (np.arange(q.history.shape[1]) < q.lengths[:, None])
        rows, cols = np.nonzero(is_arts)
        assert len(rows) > 0
        keys = q.users[rows] * index.num_tokens + q.history[rows, cols]
        arts_keys = arts_order.users * index.num_tokens + arts_order.items + 1
        assert len(np.unique(arts_keys)) == len(arts_keys)  # deduplicated: one order key per (user, item)
        first = np.argsort(arts_keys, kind="stable")
        pos = np.searchsorted(arts_keys[first], keys)
        assert (arts_keys[first][pos] == keys).all()
        assert (arts_order.order[first][pos] < target_order[rows]).all()
        assert (q.lengths > 0).all()


@pytest.mark.parametrize("ties, test_item, history", [("file_order", "y", ["x", "z"]), ("item", "z", ["x", "y"])])
def test_histories_follow_the_split_tie_rule(make_data, static_source, ties, test_item, history):
    # u1's last two target rows tie at order 2; the split picks the test item by its tie rule, and the test
    # query's history must then hold the other one (the validation item), whichever rule it is.
    from translearn.data import LeaveOneOut

    data = make_data(t=dict(users=["u1"] * 3, items=["x", "z", "y"], order=[1, 2, 2], catalog=["x", "y", "z"]),
                     s=dict(users=["u1"], items=["a"], order=[0], catalog=["a"]))
    prepared = prepare(static_source(data, ties), "t", ["s"], split=LeaveOneOut(ties=ties))
    queries = HistoryIndex(prepared, scope="target").eval_queries("test", max_len=5)
    ids = prepared.data.domain("t").item_ids
    assert [str(ids[i]) for i in queries.targets] == [test_item]
    assert [str(ids[t - 1]) for t in queries.history[0, : queries.lengths[0]]] == history
