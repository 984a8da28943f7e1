"""Every strategy runs end to end from the real entry point on every real data set (a few batches each).

The data sets live in ../shared/data (or TRANSLEARN_DATA_ROOT); the tests skip when they are absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from translearn.cli.config import compose
from translearn.train import train

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
SHORT = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=2",
         "+trainer.limit_test_batches=2", "logger=none", "data.eval_batch_size=256"]
STAGE_STRATEGIES = ["finetune", "distill", "feature_reuse", "fusion", "mapping"]


def _need(folder: str) -> None:
    if not (DATA_ROOT / folder).is_dir():
        pytest.skip(f"real data set {folder} not found under {DATA_ROOT} (set TRANSLEARN_DATA_ROOT)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real-cache")


FOLDERS = {"arts_office": "amazon-arts-office", "cloth_sport": "amazon-cloth-sport", "ml100k_genres": "movielens-100k"}
TARGETS = {"arts_office": ("office", ["arts"]), "cloth_sport": ("sports", ["clothing"]),
           "ml100k_genres": ("comedy", ["other"])}
CLASSES = {"target_only": "TargetOnly", "joint": "Joint", "finetune": "FineTune", "distill": "Distillation",
           "feature_reuse": "FeatureReuse", "fusion": "Fusion", "mapping": "Mapping"}


def _check_run(summary: dict, out: Path, strategy: str, epochs: int = 1) -> dict:
    """What a (barely trained) run must get right whatever its quality: it is the strategy asked for, it trained
    and saved, and its test metrics are finite and consistent with one held-out item per user over a real
    catalogue (recall = HR, precision = HR / k, MRR <= NDCG <= HR, and not every item at rank 1, which is
    what NaN scores would give). Returns the test metrics without their prefix."""
    assert summary["strategy"] == CLASSES[strategy] and summary["epochs_run"] == epochs
    assert json.loads((out / "metrics.json").read_text()) == summary
    assert (out / summary["best_checkpoint"]).is_file()
    t = {k.removeprefix("test/target/"): v for k, v in summary.items() if k.startswith("test/target/")}
    assert {"ndcg@10", "hr@10", "hr@20", "mrr@10", "recall@10", "precision@10", "auc"} <= set(t), sorted(t)
    assert all(math.isfinite(v) for v in t.values()), t
    assert 0.0 < t["auc"] < 1.0
    # each is 0 for a user without a hit in the top 10 and at most 1 (MRR may pass NDCG with several targets)
    assert 0.0 <= max(t["mrr@10"], t["ndcg@10"]) <= t["hr@10"] <= t["hr@20"] < 1.0
    assert t["precision@10"] == pytest.approx(t["hr@10"] / 10, abs=1e-6)
    return t


@pytest.mark.parametrize("data", list(FOLDERS))
@pytest.mark.parametrize("strategy", ["target_only", "joint", *STAGE_STRATEGIES])
def test_strategy_on_real_cross_domain_data(data, strategy, cache, tmp_path):
    _need(FOLDERS[data])
    stage = ["strategy.stage.max_epochs=1"] if strategy in STAGE_STRATEGIES else []
    overrides = [f"data={data}", f"strategy={strategy}", f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={cache}",
                 *SHORT, *stage]
    summary = train(compose(overrides, output_dir=tmp_path))
    t = _check_run(summary, tmp_path, strategy)
    assert summary["data"] == data and (summary["target_domain"], summary["source_domains"]) == TARGETS[data]
    assert t["recall@10"] == pytest.approx(t["hr@10"], abs=1e-6)  # leave-one-out: one held-out item per user


def test_cold_start_split_on_real_data(cache, tmp_path):
    _need("amazon-arts-office")
    overrides = ["experiment=arts_office_cold", "strategy=mapping", "data.split.holdout_fraction=0.5",
                 f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={cache}", *SHORT, "strategy.stage.max_epochs=1"]
    cfg = compose(overrides, output_dir=tmp_path)
    summary = train(cfg)
    t = _check_run(summary, tmp_path, "mapping")
    from translearn.build import build_data

    prepared = build_data(cfg.data, cfg.paths.cache_dir)  # the run's cached data
    assert prepared.key == summary["data_manifest_key"]
    test_users = np.unique(prepared.held_out("test").users)
    assert len(test_users) > 100 and not prepared.users_with_training_data([prepared.target])[test_users].any()
    assert t["recall@10"] <= t["hr@10"]  # a cold user holds all of their target items out: several per user


def test_single_domain_movielens(cache, tmp_path):
    _need("movielens-100k")
    base = ["data=ml100k", f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={cache}", *SHORT]
    summary = train(compose([*base, "strategy=target_only", "loss=mse", "data.num_negatives=0"], output_dir=tmp_path))
    assert summary["test/target/rmse"] > 0 and summary["test/target/mae"] > 0  # ratings are predicted
    with pytest.raises(Exception, match="source domain"):
        train(compose([*base, "strategy=joint"], output_dir=tmp_path / "joint"))
    with pytest.raises(Exception, match="data.source_domains is empty"):
        train(compose([*base, "strategy=finetune", "strategy.stage.max_epochs=1"], output_dir=tmp_path / "ft"))
