"""The rating preset (``experiment=rating``): biased MF on centred ratings, MSE, selection on validation
RMSE. On MovieLens 100K it must predict held-out ratings better than the training global and item means."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from translearn.build import build_data
from translearn.cli.config import compose
from translearn.train import train

DATA_ROOT = Path(os.environ.get("TRANSLEARN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_the_preset_selects_and_stops_on_validation_rmse(tmp_path):
    cfg = compose(["experiment=rating"], output_dir=tmp_path)
    assert cfg.monitor == "val/target/rmse"  # the preset's monitor wins over train.yaml's default
    for name in ("model_checkpoint", "early_stopping"):
        assert cfg.callbacks[name].monitor == "val/target/rmse" and cfg.callbacks[name].mode == "min"
    assert cfg.model.bias is True and cfg.loss._target_.endswith("MSELoss") and cfg.data.num_negatives == 0
    assert cfg.data.preprocess.center.method == "center"


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def test_rating_preset_beats_global_and_item_means_on_movielens(tmp_path):
    if not (DATA_ROOT / "movielens-100k").is_dir():
        pytest.skip(f"MovieLens 100K not found under {DATA_ROOT} (set TRANSLEARN_DATA_ROOT)")
    overrides = ["experiment=rating", "data=ml100k", "strategy=target_only", f"paths.data_root={DATA_ROOT}",
                 f"paths.cache_dir={tmp_path / 'cache'}", "logger=none", "evaluation.metrics=[ndcg]",
                 "evaluation.ks=[10]"]
    cfg = compose(overrides, output_dir=tmp_path / "run")
    summary = train(cfg)
    # The references, by hand from the same prepared (centred) training ratings: centring shifts the
    # predictions and the held-out ratings alike, so the errors are in rating units.
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    tr, test = prepared.train(prepared.target), prepared.held_out("test")
    mean = float(tr.ratings.mean())
    assert abs(mean) < 1e-4  # centred on the training mean
    n = prepared.num_items(prepared.target)
    sums, counts = np.bincount(tr.items, tr.ratings, minlength=n), np.bincount(tr.items, minlength=n)
    item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), mean)
    global_rmse, item_rmse = _rmse(np.full(len(test.ratings), mean), test.ratings), _rmse(item_mean[test.items],
                                                                                          test.ratings)
    assert item_rmse < global_rmse
    assert summary["test/target/rmse"] < item_rmse - 0.03, (summary["test/target/rmse"], item_rmse)
    assert summary["test/target/mae"] < summary["test/target/rmse"]
    assert summary["best_epoch"] > 0  # chosen on validation RMSE, not the untrained first epoch
