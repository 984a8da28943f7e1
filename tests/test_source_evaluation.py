"""Source-domain evaluation (``evaluation.domains: [target, source]``): held-out source rows only when asked,
exact metrics on the source's own items, and the real entry point for id and sequence models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from translearn.build import build_data, build_run_data
from translearn.cli.config import compose
from translearn.data import prepare
from translearn.data.datamodule import CrossDomainDataModule, TrainBatches
from translearn.data.splits import TEST, TRAIN
from translearn.errors import ConfigError
from translearn.models import matrix_factorization
from translearn.strategies import Joint, TargetOnly
from translearn.train import train

SMALL = ["data.dataset.num_users=200", "data.dataset.num_items=[60,50]", "data.batch_size=128",
         "data.eval_batch_size=64", "trainer.max_epochs=2"]


def test_source_rows_are_held_out_only_when_asked(tiny_data, static_source):
    plain = prepare(static_source(tiny_data), "t", ["s"])
    held = prepare(static_source(tiny_data), "t", ["s"], held_out_sources=["s"])
    # source s: u1 a(1) b(2) -> b test; u2 a, u3 c keep their single row; u4 b(5) c(6) -> c test
    assert held.role_of("s").tolist() == [TRAIN, TEST, TRAIN, TRAIN, TRAIN, TEST]
    assert (plain.role_of("s") == TRAIN).all()
    assert np.array_equal(held.roles, plain.roles)  # the target's split does not move
    assert len(held.train("s")) == 4 and held.key != plain.key
    assert held.stats()["source_split"] == {"s": {"train": 4, "valid": 0, "test": 2}}
    assert any("held out of its training data" in line for line in held.report)
    with pytest.raises(ConfigError, match="evaluation.domains: 't' is not a source domain"):
        prepare(static_source(tiny_data), "t", ["s"], held_out_sources=["t"])


def _fixed_mf(num_users: int) -> torch.nn.Module:
    """1-d MF: every user 1, source items a, b, c = 3, 2, 1 (so a > b > c for everyone), target items 0."""
    model = matrix_factorization(num_users, {"s": 3, "t": 5}, embedding_dim=1)
    with torch.no_grad():
        model.user_encoder.weight.fill_(1.0)
        model.item_encoders["s"].weight.copy_(torch.tensor([[3.0], [2.0], [1.0]]))
        model.item_encoders["t"].weight.zero_()
    return model


def test_source_metrics_by_hand(tiny_data, static_source, hand_facts):
    prepared = prepare(static_source(tiny_data), "t", ["s"], held_out_sources=["s"])
    strategy = Joint(_fixed_mf(prepared.num_users), "t", ["s"], ks=(1, 2), metrics=("hr", "mrr", "ndcg"),
                     facts=hand_facts(prepared.num_users, 5), eval_domains=["s"])
    dm = CrossDomainDataModule(prepared, strategy.train_domains, eval_domains=strategy.eval_domains)
    target_loader, source_loader = dm.test_dataloader()
    named = dm.eval_loaders  # the loaders by name, in the data module's order
    assert [(loader.name, loader.domain, loader.protocol) for loader in named] == [("target", "t", "full"),
                                                                                   ("s", "s", "full")]
    for batch in source_loader:
        strategy.evaluate_batch(batch, "test", named[1])
    got = {name: m.compute().item() for name, m in strategy.evaluator.metrics("test", "s").items()}
    # u1: a known (masked), test b ranks 1 of {b, c}; u4: b known, test c ranks 2 behind a
    assert got["hr@1"] == pytest.approx(0.5) and got["hr@2"] == pytest.approx(1.0)
    assert got["mrr@2"] == pytest.approx(0.75)
    assert got["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert named[1].key("test", "ndcg@2") == "test/s/ndcg@2"
    # the joint model trains on the source's training rows only: no held-out source row is a training row
    rows = TrainBatches(prepared, ["t", "s"], 1, 0).rows["s"]
    test = prepared.held_out("test", "s")
    assert not set(zip(rows.users, rows.items, strict=True)) & set(zip(test.users, test.items, strict=True))


def test_a_model_without_a_source_tower_cannot_be_asked_from_python(hand_facts):
    model = matrix_factorization(3, {"t": 5}, embedding_dim=2)
    with pytest.raises(ValueError, match="cannot evaluate domain 's': the model has no item tower for 's'"):
        TargetOnly(model, "t", ["s"], facts=hand_facts(3, 5), eval_domains=["s"])


@pytest.mark.parametrize("model", ["mf", "sasrec"])
def test_the_cli_run_logs_source_metrics(model, tmp_path):
    extra = ["model=sasrec", "model.max_history=10", "model.embedding_dim=16", "model.inner_size=32"] \
        if model == "sasrec" else []
    common = [*SMALL, *extra, "evaluation.domains=[target,source]", f"paths.cache_dir={tmp_path / 'cache'}",
              f"paths.log_dir={tmp_path / 'logs'}"]
    joint = train(compose([*common, "strategy=joint"], output_dir=tmp_path / "joint"))
    for stage in ("val", "test"):
        assert 0.0 < joint[f"{stage}/source/ndcg@10"] < 1.0
        assert 0.0 < joint[f"{stage}/target/ndcg@10"] < 1.0
    if model == "sasrec":  # the sequence path ranks the source by its own histories; the rest is model-agnostic
        return
    cfg = compose([*SMALL, "strategy=joint"], output_dir=tmp_path / "plain")
    plain = build_data(cfg.data, tmp_path / "cache")  # the same data without evaluation.domains
    assert plain.key != joint["data_manifest_key"]  # the source's training data changed
    assert len(plain.train("source")) > len(build_run_data(compose(common)).train("source"))
    with pytest.raises(ConfigError, match="TargetOnly cannot evaluate source 'source'"):  # asked for: refused
        train(compose([*common, "strategy=target_only"], output_dir=tmp_path / "alone"))


def test_bad_evaluation_domains_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="'arts' is neither target, source nor a source domain"):
        train(compose([*SMALL, "evaluation.domains=[target,arts]"], output_dir=tmp_path / "a"))
    with pytest.raises(ConfigError, match="primary protocol is sampled"):
        train(compose([*SMALL, "evaluation.domains=[target,source]", "data/protocol=sampled"],
                      output_dir=tmp_path / "b"))
