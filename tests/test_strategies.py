"""Strategies: the loss is the formula (checked by hand), evaluation is exact, and transfer helps or
hurts where the synthetic data is built so that it must."""

from __future__ import annotations

import functools
import math

import pytest
import pytorch_lightning as pl
import torch

from translearn.data import Deduplicate, prepare
from translearn.data.datamodule import CrossDomainDataModule
from translearn.data.facts import DataFacts
from translearn.data.sources import SyntheticSource
from translearn.losses import BPRLoss, MSELoss
from translearn.models import matrix_factorization
from translearn.strategies import Joint, TargetOnly


def _fixed_mf() -> torch.nn.Module:
    """MF with 1-d embeddings set by hand: users [1, 2], source items [1, -1], target items [2, 0, -1]."""
    model = matrix_factorization(2, {"s": 2, "t": 3}, embedding_dim=1)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item_encoders["s"].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.item_encoders["t"].weight.copy_(torch.tensor([[2.0], [0.0], [-1.0]]))
    return model


def _bpr(pos: float, neg: float) -> float:
    return -math.log(1.0 / (1.0 + math.exp(-(pos - neg))))



BATCH = {
    "t": {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 1]), "negatives": torch.tensor([[2], [0]])},
    "s": {"users": torch.tensor([1]), "items": torch.tensor([0]), "negatives": torch.tensor([[1]])},
}


def test_target_only_loss_is_bpr_on_the_target_batch():
    strategy = TargetOnly(_fixed_mf(), "t", ["s"], loss=BPRLoss())
    # user 0: pos item 0 -> 1*2 = 2, neg item 2 -> -1; user 1: pos item 1 -> 0, neg item 0 -> 4
    expected = (_bpr(2, -1) + _bpr(0, 4)) / 2
    out = strategy.compute_loss(BATCH)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["loss_t"].item() == pytest.approx(expected, rel=1e-6)
    assert strategy.train_domains == ["t"]


def test_joint_loss_is_source_plus_lambda_times_target(hand_facts):
    strategy = Joint(_fixed_mf(), "t", ["s"], lam=0.5, loss=BPRLoss(), facts=hand_facts(2, 3))
    loss_t = (_bpr(2, -1) + _bpr(0, 4)) / 2
    loss_s = _bpr(2 * 1, 2 * -1)  # user 1 (vector 2): pos source item 0 -> 2, neg item 1 -> -2
    out = strategy.compute_loss(BATCH)
    assert out["loss_s"].item() == pytest.approx(loss_s, rel=1e-6)
    assert out["loss_t"].item() == pytest.approx(loss_t, rel=1e-6)
    assert out["loss"].item() == pytest.approx(loss_s + 0.5 * loss_t, rel=1e-6)
    assert strategy.train_domains == ["t", "s"]


def test_joint_rejects_a_negative_lambda_and_missing_sources(hand_facts):
    with pytest.raises(ValueError, match="strategy.lam"):
        Joint(_fixed_mf(), "t", ["s"], lam=-1.0, facts=hand_facts(2, 3))
    with pytest.raises(ValueError, match="source_domains"):
        Joint(_fixed_mf(), "t", [], facts=hand_facts(2, 3))


def test_mse_loss_needs_ratings():
    strategy = TargetOnly(_fixed_mf(), "t", loss=MSELoss())
    with pytest.raises(ValueError, match="needs explicit ratings"):
        strategy.compute_loss(BATCH)
    rated = {"t": {"users": torch.tensor([0]), "items": torch.tensor([0]), "ratings": torch.tensor([3.0])}}
    assert strategy.compute_loss(rated)["loss"].item() == pytest.approx((2.0 - 3.0) ** 2)


def test_full_ranking_evaluation_masks_history_and_counts_exactly():
    strategy = TargetOnly(_fixed_mf(), "t", ks=(1, 2), metrics=("hr", "mrr", "ndcg"))
    # user 0 scores items [2, 0, -1]; item 0 is history (masked), target item 2 -> rank 2 of 2.
    # user 1 scores items [4, 0, -2]; no history, target item 1 -> rank 2 of 3 (item 0 above).
    batch = {"users": torch.tensor([0, 1]), "targets": torch.tensor([[2], [1]]),
             "exclude_rows": torch.tensor([0]), "exclude_cols": torch.tensor([0]),
             "n_candidates": torch.tensor([2, 3])}
    strategy.evaluate_batch(batch, "val")
    got = {name: m.compute().item() for name, m in strategy.evaluator.metrics("val").items()}
    assert got["hr@1"] == 0.0 and got["hr@2"] == 1.0
    assert got["mrr@2"] == pytest.approx(0.5)
    assert got["ndcg@2"] == pytest.approx(1 / math.log2(3))


def test_a_held_out_repeat_of_a_history_item_is_not_masked_under_keep():
    strategy = TargetOnly(_fixed_mf(), "t", ks=(1,), metrics=("hr",), repeats="keep")
    # user 1 has item 0 in history and again as the target: it must still be ranked (rank 1).
    batch = {"users": torch.tensor([1]), "targets": torch.tensor([[0]]), "exclude_rows": torch.tensor([0]),
             "exclude_cols": torch.tensor([0]), "n_candidates": torch.tensor([3])}
    strategy.evaluate_batch(batch, "test")
    assert strategy.evaluator.metrics("test")["hr@1"].compute().item() == 1.0


def _val_ndcg(strategy_cls: type, similarity: float, target_per_user: float, seed: int = 0) -> float:
    source = SyntheticSource(num_users=600, num_items=(200, 150), interactions_per_user=(30.0, target_per_user),
                             overlap=1.0, similarity=similarity, seed=0)
    prepared = prepare(source, "target", ["source"], {"dedup": Deduplicate()})
    pl.seed_everything(seed, verbose=False)
    model = matrix_factorization(prepared.num_users, {d: prepared.num_items(d) for d in prepared.domains}, 8, 0.1)
    strategy = strategy_cls(model, "target", ["source"], optimizer=functools.partial(torch.optim.Adam, lr=0.01),
                            ks=(10,), metrics=("ndcg",), facts=DataFacts.of(prepared))
    dm = CrossDomainDataModule(prepared, strategy.train_domains, batch_size=256, eval_batch_size=256, seed=seed)
    trainer = pl.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, check_val_every_n_epoch=1000)
    trainer.fit(strategy, dm)
    return trainer.validate(strategy, dm, verbose=False)[0]["val/target/ndcg@10"]


def test_joint_beats_target_only_when_domains_are_similar_and_the_target_is_sparse():
    target_only, joint = _val_ndcg(TargetOnly, 1.0, 4.0), _val_ndcg(Joint, 1.0, 4.0)
    assert joint > 1.25 * target_only, (joint, target_only)


def test_joint_shows_negative_transfer_when_domains_are_unrelated():
    target_only, joint = _val_ndcg(TargetOnly, 0.0, 10.0), _val_ndcg(Joint, 0.0, 10.0)
    assert joint < 0.85 * target_only, (joint, target_only)


def test_joint_refuses_domains_without_shared_users():
    source = SyntheticSource(num_users=200, num_items=(50, 40), overlap=0.0, seed=1)
    prepared = prepare(source, "target", ["source"])
    model = matrix_factorization(prepared.num_users, {d: prepared.num_items(d) for d in prepared.domains}, 4)
    with pytest.raises(ValueError, match="no users in common"):  # when it is built, before any training
        Joint(model, "target", ["source"], facts=DataFacts.of(prepared))
    with pytest.raises(TypeError, match="Joint needs facts=DataFacts.of"):  # it cannot skip the check
        Joint(model, "target", ["source"])


def test_popularity_ranks_by_training_counts(hand_facts, tmp_path, run_overrides):
    from translearn.strategies import Popularity

    with pytest.raises(TypeError, match="facts=DataFacts.of"):
        Popularity(_fixed_mf(), "t")
    strategy = Popularity(_fixed_mf(), "t", ks=(1, 2), metrics=("hr",), facts=hand_facts(2, 3, counts=[2, 1, 3]))
    assert strategy.score_all(torch.tensor([0, 1])).tolist() == [[2.0, 1.0, 3.0]] * 2
    batch = {"users": torch.tensor([0]), "targets": torch.tensor([[0]]), "exclude_rows": torch.tensor([0]),
             "exclude_cols": torch.tensor([1]), "n_candidates": torch.tensor([2])}
    strategy.evaluate_batch(batch, "test")  # item 2 (count 3) outranks the target item 0 (count 2)
    got = {k: m.compute().item() for k, m in strategy.evaluator.metrics("test").items()}
    assert got == {"hr@1": 0.0, "hr@2": 1.0}
    from translearn.cli.config import compose
    from translearn.train import train

    summary = train(compose([*run_overrides, "strategy=popularity", "trainer.max_epochs=5"], output_dir=tmp_path))
    assert summary["epochs_run"] == 1 and summary["test/target/hr@10"] > 0.0
