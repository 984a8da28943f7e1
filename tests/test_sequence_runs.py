"""Sequence models wired end to end: the query in evaluation rows, tied item towers, loss=auto, the real
entry point on ordered synthetic data, and every strategy either working with SASRec or refusing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from translearn.build import build_data, build_datamodule, build_model, build_strategy
from translearn.cli.config import compose
from translearn.data.prepare import prepare
from translearn.data.sequence_data import HistorySpec, QueryEvalRows, SequenceTrainData, StreamBatchSampler
from translearn.data.splits import RatioSplit
from translearn.losses import BPRLoss, CrossEntropyLoss
from translearn.models import sasrec
from translearn.train import train

SMALL_SASREC = ["model=sasrec", "model.max_history=20", "model.embedding_dim=32", "model.inner_size=64"]
ORDERED = [*SMALL_SASREC, "data.dataset.sequential=0.9"]

DENSE_ORDER = ["data.dataset.num_users=600", "data.dataset.num_items=[200,150]",
               "data.dataset.interactions_per_user=[30,20]", "data.dataset.sequential=1.0"]


def _ids(prepared, domain: str, raw: list[str]) -> list[int]:
    ids = prepared.data.domain(domain).item_ids
    return [int(np.flatnonzero(ids == r)[0]) for r in raw]


def test_tied_item_towers_read_the_encoder_table() -> None:
    model = sasrec(0, {"s": 3, "t": 4}, embedding_dim=8, history_domains=["s", "t"])
    table = model.user_encoder.item_embedding.weight
    assert torch.equal(model.item_vectors("t"), table[4:8]) and torch.equal(model.item_vectors("s"), table[1:4])
    assert torch.equal(model.item_vectors("t", torch.tensor([2])), table[6:7])
    names = [n for n, _ in model.named_parameters()]
    assert names.count("user_encoder.item_embedding.weight") == 1 and not any("item_encoders" in n for n in names)


def test_query_eval_rows_mask_known_and_other_held_out_items(make_data, static_source) -> None:
    """u1 target rows (order): a b c d e f; ratio split 50/25/25 -> train a b c, valid d, test e f."""
    data = make_data(t=dict(users=["u1"] * 6 + ["u2"] * 4, items=list("abcdef") + list("abcd"),
                            order=[1, 2, 3, 4, 5, 6, 1, 2, 3, 4]))
    prepared = prepare(static_source(data, "ratio"), target="t", split=RatioSplit((0.5, 0.25, 0.25), temporal=True))
    spec = HistorySpec(("t",), "target", 10)
    rows = QueryEvalRows(prepared, "test", spec)
    batch = rows.__getitems__(list(range(len(rows))))
    a, b, c, d, e, f = _ids(prepared, "t", list("abcdef"))
    u1 = int(np.flatnonzero(prepared.data.user_ids == "u1")[0])
    for r in np.flatnonzero(batch["users"].numpy() == u1):
        target = int(batch["targets"][r, 0])
        masked = set(batch["exclude_cols"][batch["exclude_rows"] == r].tolist())
        other = f if target == e else e
        assert masked == {a, b, c, d, other}  # training, valid, and the other test item; never the target
        assert int(batch["n_candidates"][r]) == 6 - 5
        history = batch["history"][r, : batch["history_len"][r]].tolist()
        expect = [a, b, c, d] + ([e] if target == f else [])  # per-target cut: e is history for f only
        assert history == [i + 1 for i in expect]


def test_stream_sampler_covers_each_sequence_once_per_epoch_and_is_deterministic() -> None:
    cfg = compose([*ORDERED, "strategy=joint"], output_dir="unused")
    prepared = build_data(cfg.data, None)
    spec = HistorySpec(("target", "source"), "target", 20)
    data = SequenceTrainData(prepared, spec, ["target", "source"])
    sampler = StreamBatchSampler(data, 64, seed=3)
    epoch0 = list(sampler)
    anchor = [i for batch in epoch0 for s, i in batch if s == sampler.anchor]
    assert sorted(anchor) == list(range(len(data.streams[sampler.anchor])))
    assert all(any(s != sampler.anchor for s, _ in batch) for batch in epoch0)  # the other stream in every step
    assert list(sampler) == epoch0
    from lightning_fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    _set_sampler_epoch(DataLoader(data, batch_sampler=sampler, collate_fn=lambda b: b), 1)  # what Lightning calls
    assert sampler.epoch == 1 and list(sampler) != epoch0


def test_loss_auto_gives_ce_for_sequences_and_bpr_for_mf(tmp_path) -> None:
    for overrides, expected in ((["model=sasrec"], CrossEntropyLoss), ([], BPRLoss)):
        cfg = compose([*overrides, "strategy=target_only"], output_dir=tmp_path)
        prepared = build_data(cfg.data, tmp_path / "cache")
        strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
        assert type(strategy.loss_fn) is expected
        dm = build_datamodule(cfg, prepared, strategy)
        assert (dm.history is not None) == (expected is CrossEntropyLoss)


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sasrec")
    return train(compose([*SMALL_SASREC, *DENSE_ORDER, "strategy=target_only", "trainer.max_epochs=8",
                          f"paths.cache_dir={out / 'cache'}"], output_dir=out / "run"))


def test_sasrec_learns_the_order_signal(sasrec_run, tmp_path) -> None:
    """With each next item the nearest one ahead on the ring, SASRec must beat popularity by a wide margin."""
    popularity = train(compose([*DENSE_ORDER, "strategy=popularity",
                                f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path / "pop"))
    assert sasrec_run["test/target/ndcg@10"] > 1.8 * popularity["test/target/ndcg@10"]
    assert sasrec_run["test/target/ndcg@10"] < 0.9  # not an evaluation leak


@pytest.mark.parametrize("strategy,extra", [
    ("joint", []), ("joint", ["model.history_scope=all"]), ("target_only", ["model.history_scope=all"]),
    ("target_only", ["model.history_scope=all", "model.own_view=false"]),
    ("finetune", ["strategy.stage.max_epochs=1"]), ("fusion", ["strategy.stage.max_epochs=1"]),
    ("finetune", ["strategy.stage.max_epochs=1", "loss=bpr"]),
])
def test_sequence_strategies_run_end_to_end(strategy, extra, tmp_path) -> None:
    summary = train(compose([*ORDERED, f"strategy={strategy}", *extra, "trainer.max_epochs=1",
                             f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path / "run"))
    assert 0.0 < summary["test/target/ndcg@10"] < 1.0
    assert np.isfinite(summary["val/target/auc"])


@pytest.mark.parametrize("strategy", ["mapping", "ptupcdr", "feature_reuse", "distill"])
def test_strategies_without_a_static_user_vector_refuse_sequence_models(strategy, tmp_path) -> None:
    cfg = compose([*ORDERED, f"strategy={strategy}"], output_dir=tmp_path)
    prepared = build_data(cfg.data, tmp_path / "cache")
    with pytest.raises(ValueError, match="does not work with sequence models"):
        build_strategy(cfg, prepared, build_model(cfg, prepared))
    assert not (tmp_path / "cache" / "stage").exists()  # refused before a stage was trained


def test_data_without_an_order_key_names_it(tmp_path) -> None:
    from translearn.data.history import HistoryError

    cfg = compose(["model=sasrec", "strategy=target_only", "data.dataset.sequential=0.0"], output_dir=tmp_path)
    prepared = build_data(cfg.data, tmp_path / "cache")
    inter = prepared.data.domain("target").interactions
    object.__setattr__(inter, "order", None)
    with pytest.raises(HistoryError, match="order key"):
        QueryEvalRows(prepared, "valid", HistorySpec(("target",), "target", 5))


def test_sequence_models_read_their_own_batch_size(tmp_path) -> None:
    """data.sequence_batch_size (labelled positions) for sequence models, data.batch_size for id models."""
    from types import SimpleNamespace

    from translearn.build import train_batch_size

    cfg = compose(["data=arts_office", "data.batch_size=999"], output_dir=tmp_path)
    sequence_model, id_model = SimpleNamespace(needs_history=50), SimpleNamespace(needs_history=0)
    assert train_batch_size(cfg, sequence_model) == 256 and train_batch_size(cfg, id_model) == 999
    cfg.data.sequence_batch_size = None  # a data config written before the key: the one batch size
    assert train_batch_size(cfg, sequence_model) == 999
