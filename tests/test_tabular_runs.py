"""Every strategy from the CLI entry point on user-supplied files (two CSVs, string ids), and mapping
with rating prediction (MAE/RMSE) on cold-start users."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.cli.config import compose
from translearn.train import train

STRATEGIES = ["target_only", "joint", "finetune", "distill", "feature_reuse", "fusion", "mapping", "ptupcdr"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    for name, n_items in (("books", 40), ("movies", 30)):
        rows = [f"user_{u},{name}_{i},{rng.integers(1, 6)},{t}"
                for u in range(60) for t, i in enumerate(rng.choice(n_items, size=6, replace=False))]
        (folder / f"{name}.csv").write_text("uid,iid,stars,ts\n" + "\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_on_user_files(strategy, files, tmp_path):
    overrides = [
        "data=tabular", f"+data.dataset.files={{books: {files / 'books.csv'}, movies: {files / 'movies.csv'}}}",
        "data.dataset.user_column=uid", "data.dataset.item_column=iid", "data.dataset.rating_column=stars",
        "data.dataset.order_column=ts", "data.source_domains=[books]", "data.target_domain=movies",
        f"strategy={strategy}", "trainer.max_epochs=1", "logger=none", "data.batch_size=64",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    if strategy not in ("target_only", "joint"):
        overrides.append("strategy.stage.max_epochs=1")
    if strategy == "ptupcdr":  # one epoch: the joint schedule (test_ptupcdr.py runs the sequential one)
        overrides.append("strategy.schedule=joint")
    summary = train(compose(overrides, output_dir=tmp_path / "run"))
    assert summary["target_domain"] == "movies" and 0.0 <= summary["test/target/hr@10"] <= 1.0


def test_mapping_predicts_ratings_of_cold_start_users(tmp_path):
    # Biased MF on ratings centred on the training mean (centring leaves errors in rating units). Without
    # target data, target_only predicts a cold user's rating by the item bias alone (an item-mean model).
    # Both select the epoch on validation RMSE, the metric compared (the mode follows the monitor: min).
    overrides = ["loss=mse", "data.num_negatives=0", "data.split=cold_start", "data.split.holdout_fraction=0.5",
                 "model.bias=true", "model.embedding_dim=16", "model.init_std=0.1", "optimizer.lr=0.01",
                 "trainer.max_epochs=20", "monitor=val/target/rmse", "data.dataset.similarity=1.0", "logger=none",
                 "evaluation.metrics=[ndcg]",
                 f"paths.cache_dir={tmp_path / 'cache'}",
                 "+data.preprocess.center._target_=translearn.data.NormaliseRatings",
                 "+data.preprocess.center.method=center"]
    mapped = train(compose([*overrides, "strategy=mapping", "strategy.stage.max_epochs=20"], output_dir=tmp_path / "m"))
    baseline = train(compose([*overrides, "strategy=target_only"], output_dir=tmp_path / "t"))
    assert 0.0 < mapped["test/target/mae"] <= mapped["test/target/rmse"]
    assert mapped["test/target/rmse"] < 0.98 * baseline["test/target/rmse"], (mapped, baseline)
    assert mapped["test/target/mae"] < 0.97 * baseline["test/target/mae"], (mapped, baseline)
