"""Sparsifying the training rows after the split (issue 24 §2): the same held-out rows and users at every
fraction, so a dense and a sparse setting compare user for user; the report says which was done."""

from __future__ import annotations

import json

import numpy as np

from translearn.cli.config import compose
from translearn.data.prepare import prepare
from translearn.data.preprocess import SparsifyDomain
from translearn.data.sources import SyntheticSource


def _stats(run_cli, tmp_path, keep: float, rows: str) -> dict:
    done = run_cli("translearn-data", [
        "data.dataset.num_users=240", "data.dataset.num_items=[80,60]", f"paths.cache_dir={tmp_path / 'cache'}",
        "+data.preprocess.sparsify._target_=translearn.data.SparsifyDomain", "+data.preprocess.sparsify.domain=target",
        f"+data.preprocess.sparsify.keep_fraction={keep}", f"+data.preprocess.sparsify.rows={rows}", "--json"])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_sparsifying_training_rows_keeps_the_test_population(run_cli, tmp_path):
    dense, sparse = _stats(run_cli, tmp_path, 1.0, "train"), _stats(run_cli, tmp_path, 0.3, "train")
    for key in ("valid", "test", "eval_users"):
        assert sparse["stats"]["split"][key] == dense["stats"]["split"][key], (key, dense, sparse)
    assert sparse["stats"]["split"]["train"] < 0.4 * dense["stats"]["split"]["train"]
    assert any("training rows after the split" in line for line in sparse["report"]), sparse["report"]
    before = _stats(run_cli, tmp_path, 0.3, "all")  # the old behaviour: the test population shrinks
    assert before["stats"]["split"]["eval_users"] < dense["stats"]["split"]["eval_users"]
    assert any("every row before the split" in line for line in before["report"])


def test_the_same_held_out_rows_and_users_at_every_fraction(tmp_path):
    source = SyntheticSource(num_users=240, num_items=[80, 60])

    def held(keep: float) -> tuple[np.ndarray, np.ndarray]:
        prepared = prepare(source, "target", ["source"], [SparsifyDomain("target", keep, rows="train")])
        test = prepared.held_out("test")
        return prepared.data.user_ids[test.users], prepared.data.domain("target").item_ids[test.items]

    for a, b in zip(held(1.0), held(0.3), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_sparsity_presets_sparsify_training_rows_after_the_split():
    for preset in ("cloth_sport_sparse", "ml100k_genres_sparse"):
        cfg = compose([f"experiment={preset}"], output_dir="/tmp/unused")
        assert cfg.data.preprocess.sparsify.rows == "train" and cfg.data.preprocess.sparsify.keep_fraction == 0.3
