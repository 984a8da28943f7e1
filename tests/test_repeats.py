"""evaluation.repeats: a held-out item the user also has among the known items, ranked by hand.

Hand model (1-d MF): user 0 = 1, user 1 = 2; target items 0, 1, 2, 3 = 2, 0, -1, 1, so user 1 scores
items [4, 0, -2, 2] and user 0 scores [2, 0, -1, 1].
"""

from __future__ import annotations

import json

import pytest
import torch

from translearn.cli.config import compose
from translearn.data import LeaveOneOut, prepare
from translearn.data.datamodule import CrossDomainDataModule
from translearn.models import matrix_factorization
from translearn.strategies import TargetOnly
from translearn.train import train

METRICS = ("hr", "mrr", "auc")


def _mf() -> torch.nn.Module:
    model = matrix_factorization(2, {"t": 4}, embedding_dim=1)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item_encoders["t"].weight.copy_(torch.tensor([[2.0], [0.0], [-1.0], [1.0]]))
    return model


def _evaluate(repeats: str, batch: dict) -> dict[str, float]:
    strategy = TargetOnly(_mf(), "t", ks=(1, 3), metrics=METRICS, repeats=repeats)
    strategy.evaluate_batch({k: v.clone() for k, v in batch.items()}, "test")
    return {name: m.compute().item() for name, m in strategy.evaluator.metrics("test").items()}


# user 1 knows items 0 and 3 and holds out item 0 again (a repeat): candidates = items 0 (target), 1, 2
REPEAT = {"users": torch.tensor([1]), "targets": torch.tensor([[0]]), "exclude_rows": torch.tensor([0, 0]),
          "exclude_cols": torch.tensor([0, 3]), "n_candidates": torch.tensor([3])}


def test_keep_ranks_a_repeated_target_by_its_score():
    got = _evaluate("keep", REPEAT)
    # item 0 scores 4, above items 1 (0) and 2 (-2); item 3 (2) is masked: rank 1, AUC (2 - 0) / 2
    assert got == {"hr@1": 1.0, "hr@3": 1.0, "mrr@1": 1.0, "mrr@3": 1.0, "auc": 1.0}


def test_mask_ranks_a_repeated_target_last_among_the_candidates():
    got = _evaluate("mask", REPEAT)
    # masked with the other known item 3, the target ranks after both unmasked items 1 and 2: rank 3
    assert got["hr@1"] == 0.0 and got["hr@3"] == 1.0
    assert got["mrr@1"] == 0.0 and got["mrr@3"] == pytest.approx(1 / 3)
    assert got["auc"] == 0.0  # both negatives above it


def test_mask_leaves_targets_that_are_not_known_alone():
    # user 0 knows item 0; targets 3 (new, score 1) and 0 (a repeat); candidates items 1, 2, 3 and the repeat
    batch = {"users": torch.tensor([0]), "targets": torch.tensor([[3, 0]]), "exclude_rows": torch.tensor([0]),
             "exclude_cols": torch.tensor([0]), "n_candidates": torch.tensor([4])}
    mask, keep = _evaluate("mask", batch), _evaluate("keep", batch)
    # keep: item 0 (2) rank 1, item 3 (1) rank 2 -> hr@1 1, mrr@3 1; AUC: each target beats both negatives
    assert keep == {"hr@1": 1.0, "hr@3": 1.0, "mrr@1": 1.0, "mrr@3": 1.0, "auc": 1.0}
    # mask: item 3 rank 1 (above items 1 and 2), item 0 rank 4 (after them); AUC (1 + 0) / 2
    assert mask == {"hr@1": 1.0, "hr@3": 1.0, "mrr@1": 1.0, "mrr@3": 1.0, "auc": 0.5}


def test_unknown_repeats_option_names_the_key():
    with pytest.raises(ValueError, match=r"evaluation.repeats must be one of mask, keep, got 'drop'"):
        TargetOnly(_mf(), "t", repeats="drop")


def test_repeats_through_the_data_module(make_data, static_source):
    # user b has items w (time 1), y (2), w again (3): leave-one-out makes the second w the test target and
    # y the validation item, so at test time w is both known and held out. Items w, x, y, z = indices 0..3.
    data = make_data(t=dict(users=["a", "a", "a", "b", "b", "b"], items=["w", "x", "z", "w", "y", "w"],
                            order=[1, 2, 3, 1, 2, 3]))
    prepared = prepare(static_source(data), "t", split=LeaveOneOut())
    batch = next(iter(CrossDomainDataModule(prepared, eval_batch_size=8).test_dataloader()))
    assert batch["users"].tolist() == [0, 1] and batch["targets"].tolist() == [[3], [0]]  # a: z, b: w
    assert batch["n_candidates"].tolist() == [2, 3]  # a: 4 - {w, x}; b: 4 - {w, y} + the repeated w
    keep, mask = _evaluate("keep", batch), _evaluate("mask", batch)
    # user a (scores [2, 0, -1, 1]): target z (1) above y (-1), rank 1 under both options.
    # user b (scores [4, 0, -2, 2]): target w (4) above x (0) and z (2): rank 1 under keep, rank 3 under mask
    assert keep == {"hr@1": 1.0, "hr@3": 1.0, "mrr@1": 1.0, "mrr@3": 1.0, "auc": 1.0}
    assert mask["hr@1"] == 0.5 and mask["hr@3"] == 1.0
    assert mask["mrr@3"] == pytest.approx((1 + 1 / 3) / 2) and mask["auc"] == 0.5


def test_summary_records_the_option_and_eval_respects_it(tmp_path, run_overrides):
    # 40 users, 6 rows each over 12 items; every user's last row repeats their first item, so every test
    # target is also a training item: under mask each ranks after all candidates (AUC exactly 0)
    rows = ["user_id,item_id,t"]
    for u in range(40):
        items = [(u + 2 * k) % 12 for k in range(5)]
        rows += [f"u{u},i{i},{k}" for k, i in enumerate([*items, items[0]])]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    overrides = [*run_overrides[-2:], "data=tabular", f"+data.dataset.files={{t: {tmp_path / 't.csv'}}}",
                 "data.dataset.order_column=t", "data.target_domain=t", "data.source_domains=[]",
                 "data.preprocess.dedup=null", "strategy=target_only", "trainer.max_epochs=1",
                 "evaluation.metrics=[ndcg,auc]", "evaluation.ks=[10]", "evaluation.repeats=keep", "logger=none"]
    summary = train(compose(overrides, output_dir=run_dir))
    assert summary["repeats"] == "keep"
    from omegaconf import OmegaConf

    from translearn.cli.evaluate import main

    (run_dir / ".hydra").mkdir()
    OmegaConf.save(compose(overrides, output_dir=run_dir), run_dir / ".hydra" / "config.yaml")
    outs = {}
    for option in ("keep", "mask"):
        out = tmp_path / f"{option}.json"
        assert main([str(run_dir), f"evaluation.repeats={option}", "--split", "test", "--out", str(out)]) == 0
        outs[option] = json.loads(out.read_text())
        assert outs[option]["repeats"] == option
    assert outs["keep"]["test/target/auc"] == pytest.approx(summary["test/target/auc"], abs=1e-6)
    assert outs["keep"]["test/target/auc"] > 0.0
    assert outs["mask"]["test/target/auc"] == 0.0
