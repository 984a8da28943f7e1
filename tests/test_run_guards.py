"""Warnings that stop the run or are recorded (issue 24 §5), through ``translearn-train``: a selection score
that does not come back, a source stage that cannot be validated, a source evaluation that cannot be done,
items without images, and fusion's optimistic validation."""

from __future__ import annotations

import json

import numpy as np
import pytorch_lightning as pl
from helpers import refused
from test_image_backbones import picture


def _tabular(tmp_path, source_rows: int = 5, target_users: int = 40) -> list[str]:
    """Two CSV domains over users u0..u39 (books: ``source_rows`` rows per user; movies: 6 of 30 items)."""
    rng = np.random.default_rng(0)
    books = [f"u{u},b{i},{t}" for u in range(40) for t, i in enumerate(rng.choice(20, source_rows, replace=False))]
    movies = [f"u{u},{i},{t}" for u in range(target_users) for t, i in enumerate(rng.choice(30, 6, replace=False))]
    (tmp_path / "b.csv").write_text("user_id,item_id,ts\n" + "\n".join(books) + "\n")
    (tmp_path / "m.csv").write_text("user_id,item_id,ts\n" + "\n".join(movies) + "\n")
    return ["data=tabular", f"+data.dataset.files={{books: {tmp_path / 'b.csv'}, movies: {tmp_path / 'm.csv'}}}",
            "data.dataset.order_column=ts", "data.target_domain=movies", "data.source_domains=[books]",
            "trainer.max_epochs=1", "logger=none", "data.batch_size=64", f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}"]


def test_a_selection_score_that_does_not_come_back_is_recorded(run_cli, run_overrides, tmp_path, monkeypatch):
    real = pl.Trainer.validate

    def reloaded_differs(self, *args, **kwargs):  # as if training had validated another model than it saved
        return [{k: v - 0.25 if k == "val/target/ndcg@10" else v for k, v in part.items()}
                for part in real(self, *args, **kwargs)]

    monkeypatch.setattr(pl.Trainer, "validate", reloaded_differs)
    done = run_cli("translearn-train", [*run_overrides, "strategy=target_only", "logger=none",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    mismatch = summary["selection_mismatch"]
    assert mismatch["metric"] == "val/target/ndcg@10"
    assert abs(mismatch["when_selected"] - mismatch["validated_again"] - 0.25) < 1e-6
    assert "WARNING model selection" in done.stdout and "selection_mismatch" in done.stdout


def test_a_matching_selection_records_no_mismatch(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", [*run_overrides, "strategy=target_only", "logger=none",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["selection_mismatch"] is None and summary["evaluation_notes"] == []
    assert "WARNING" not in done.stdout


def test_a_source_stage_without_a_validation_slice_is_refused(run_cli, tmp_path):
    # one row per user in the source: no user can give a row to the stage's validation slice
    done = run_cli("translearn-train", [*_tabular(tmp_path, source_rows=1), "strategy=finetune",
                                        "strategy.stage.max_epochs=2"])
    refused(done, "strategy.stage.patience", "validation slice of 'books' is empty", "patience=null")


def test_a_requested_source_evaluation_that_cannot_be_done_is_refused(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", [*run_overrides, "strategy=target_only", "evaluation.domains=[target,source]",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    refused(done, "evaluation.domains", "TargetOnly cannot evaluate source 'source'")


def test_items_without_images_are_counted_and_refused_past_the_limit(run_cli, tmp_path):
    folder = tmp_path / "pics"
    for item in range(5):  # 5 of the 30 movies have a picture
        picture(folder / f"{item}.png", item)
    args = [*_tabular(tmp_path), f"data.dataset.image_dir={{movies: {folder}}}"]
    done = run_cli("translearn-data", [a for a in args if not a.startswith(("hydra.", "trainer.", "logger="))])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "movies: 25 of 30 items have no image" in done.stdout
    done = run_cli("translearn-train", [*args, "strategy=target_only", "model.content.item_tower=image"])
    refused(done, "data.max_missing_images", "25 of 30 items of domain 'movies'", "83.3%", "limit 0.5")


def test_fusion_says_its_validation_is_optimistic(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", [*run_overrides, "strategy=fusion", "strategy.stage.max_epochs=1",
                                        "logger=none", f"hydra.run.dir={tmp_path / 'run'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["evaluation_notes"]
    assert len(notes) == 1 and "optimistic for Fusion" in notes[0] and "among 11" in notes[0]
    assert "note: val/target/* is optimistic for Fusion" in done.stdout
