"""One training loop: the source stage is a run of ``fit_run`` whose best checkpoint the consuming run reads;
the consuming run records it; builders and the read-only tools never train."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml

from translearn import stage as stage_module
from translearn.cli.config import compose
from translearn.errors import is_user_error
from translearn.train import train

OWN_CACHE = True  # the tests look into the cache: which stage entries exist
QUICK = ["trainer.max_epochs=1", "strategy.stage.max_epochs=2"]


def _never_train(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a read-only tool trained a model")

    monkeypatch.setattr(pl.Trainer, "fit", refuse)
    monkeypatch.setattr(stage_module, "_train_stage", refuse)


@pytest.mark.parametrize("strategy, validated", [("feature_reuse", "source"), ("distill", "target")])
def test_a_copied_run_folder_evaluates_with_an_empty_cache_and_nothing_trains(tmp_path, run_overrides, run_cli,
                                                                              monkeypatch, strategy, validated):
    run = tmp_path / "run"
    done = run_cli("translearn-train", [*run_overrides, *QUICK, f"strategy={strategy}", f"hydra.run.dir={run}"],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "metrics.json").read_text())
    # the consuming run records its stage: where it is and what it scored on the domain it validated on
    entry = Path(summary["stage_dir"])
    assert entry.parent == tmp_path / "cache" / "stage"
    stage = json.loads((entry / "metrics.json").read_text())
    key = f"val/{validated}/ndcg@10"
    assert summary[f"stage/{key}"] == stage[key] and 0 < stage[key] < 1
    assert summary["stage/epochs_run"] == stage["epochs_run"] == 2
    assert summary["stage/best_epoch"] == stage["best_epoch"]
    assert (entry / stage["best_checkpoint"]).is_file() and stage["strategy"] in ("Joint", "TargetOnly")
    assert key in (entry / "train.log").read_text()  # its log names what it validates on
    if validated != "target":
        assert not any(k.startswith("stage/val/target/") for k in summary)

    # another machine: the run folder alone, an empty cache, and no training allowed
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)
    empty = tmp_path / "empty-cache"
    _never_train(monkeypatch)
    out = tmp_path / "eval.json"
    done = run_cli("translearn-eval", [copy, f"paths.cache_dir={empty}", "--out", out], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluated = json.loads(out.read_text())
    for name in ("val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@10"):
        assert evaluated[name] == pytest.approx(summary[name], abs=1e-6)
    recs = tmp_path / "recs.csv"
    done = run_cli("translearn-recommend", [copy, f"paths.cache_dir={empty}", "--all-users", "--k", "3",
                                            "--out", recs], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(recs.read_text().splitlines()) > 3
    assert not (empty / "stage").exists()  # no stage was trained, nor looked for


def test_a_builder_never_trains_a_missing_stage_it_names_the_command(tmp_path, run_overrides):
    from translearn.build import build_model, build_run_data, build_strategy
    from translearn.stage import StageMissingError

    cfg = compose([*run_overrides, "strategy=finetune"], output_dir=tmp_path / "run")
    prepared = build_run_data(cfg)
    with pytest.raises(StageMissingError) as caught:
        build_strategy(cfg, prepared, build_model(cfg, prepared))
    message = str(caught.value)
    assert "\n" not in message and is_user_error(caught.value)
    assert message.startswith("source stage missing: FineTune") and "translearn-train" in message
    assert str(tmp_path / "cache" / "stage") in message and "strategy.source_ckpt" in message
    assert not (tmp_path / "cache" / "stage").exists()
    # for loading a checkpoint (the tools' way), the same config builds without any stage
    assert build_strategy(cfg, prepared, build_model(cfg, prepared), for_loading=True).transferred


def test_a_rating_stage_selects_and_stops_on_the_lowest_validation_rmse(tmp_path, run_overrides):
    summary = train(compose([*run_overrides, "logger=csv", "loss=mse", "monitor=val/target/rmse",
                             "data.num_negatives=0", "optimizer.lr=0.01", "strategy=finetune", "trainer.max_epochs=1",
                             "strategy.stage.max_epochs=5", "strategy.stage.min_steps=0"],
                            output_dir=tmp_path / "run"))
    entry = Path(summary["stage_dir"])
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["monitor"] == "val/source/rmse"
    callbacks = yaml.safe_load((entry / "config.yaml").read_text())["callbacks"]
    assert callbacks["model_checkpoint"]["monitor"] == callbacks["early_stopping"]["monitor"] == "val/source/rmse"
    assert callbacks["model_checkpoint"]["mode"] == callbacks["early_stopping"]["mode"] == "min"
    stage = json.loads((entry / "metrics.json").read_text())
    rows = list(csv.DictReader((entry / "csv" / "metrics.csv").open()))
    per_epoch = {int(r["epoch"]): float(r["val/source/rmse"]) for r in rows
                 if r.get("val/source/rmse") and int(r["epoch"]) < stage["epochs_run"]}
    assert len(per_epoch) == 5
    best = min(per_epoch, key=per_epoch.get)
    assert stage["best_epoch"] == best != max(per_epoch, key=per_epoch.get)  # mode=max would keep the worst
    assert summary["stage/val/source/rmse"] == pytest.approx(per_epoch[best], abs=1e-6)


def test_a_stage_without_validation_keeps_its_last_epoch(tmp_path, run_overrides):
    overrides = [*run_overrides, "logger=none", "strategy=finetune", *QUICK, "strategy.stage.patience=null"]
    summary = train(compose(overrides, output_dir=tmp_path / "run"))
    entry = Path(summary["stage_dir"])
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["validated_on"] is None and meta["monitor"] is None and meta["checkpoint"] == "checkpoints/last.ckpt"
    assert [p.name for p in (entry / "checkpoints").iterdir()] == ["last.ckpt"]
    assert summary["stage/epochs_run"] == 2 and summary["stage/best_epoch"] == 1
    assert not any(k.startswith("stage/val/") for k in summary)  # nothing was validated
