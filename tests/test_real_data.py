"""Every strategy runs end to end from the real entry point on every real data set (a few batches each).

The data sets live in ../shared/data (or TRANSLEARN_DATA_ROOT); the tests skip when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.mark.parametrize("data", list(FOLDERS))
@pytest.mark.parametrize("strategy", ["target_only", "joint", *STAGE_STRATEGIES])
def test_strategy_on_real_cross_domain_data(data, strategy, cache, tmp_path):
    _need(FOLDERS[data])
    stage = ["strategy.stage.max_epochs=1"] if strategy in STAGE_STRATEGIES else []
    overrides = [f"data={data}", f"strategy={strategy}", f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={cache}",
                 *SHORT, *stage]
    summary = train(compose(overrides, output_dir=tmp_path))
    assert summary["data"] == data and 0.0 <= summary["test/target/ndcg@10"] <= 1.0


def test_cold_start_split_on_real_data(cache, tmp_path):
    _need("amazon-arts-office")
    overrides = ["experiment=arts_office_cold", "strategy=mapping", "data.split.holdout_fraction=0.5",
                 f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={cache}", *SHORT, "strategy.stage.max_epochs=1"]
    summary = train(compose(overrides, output_dir=tmp_path))
    assert summary["strategy"] == "Mapping"


def test_single_domain_movielens(cache, tmp_path):
    _need("movielens-100k")
    base = ["data=ml100k", f"paths.data_root={DATA_ROOT}", f"paths.cache_dir={cache}", *SHORT]
    summary = train(compose([*base, "strategy=target_only", "loss=mse", "data.num_negatives=0"], output_dir=tmp_path))
    assert summary["test/target/rmse"] > 0 and summary["test/target/mae"] > 0  # ratings are predicted
    with pytest.raises(Exception, match="source domain"):
        train(compose([*base, "strategy=joint"], output_dir=tmp_path / "joint"))
    with pytest.raises(Exception, match="data.source_domains is empty"):
        train(compose([*base, "strategy=finetune", "strategy.stage.max_epochs=1"], output_dir=tmp_path / "ft"))
