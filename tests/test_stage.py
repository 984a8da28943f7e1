"""The source stage: a run of the one loop, trained once, then read from the cache; source_ckpt overrides;
atomic entries."""

from __future__ import annotations

import pytest
import torch

from translearn import stage as stage_module
from translearn.cli.config import compose
from translearn.train import train

OWN_CACHE = True  # run_overrides: these tests count the stage entries of their own cache


def _overrides(run_overrides, *extra):
    stage = [] if "strategy=joint" in extra else ["strategy.stage.max_epochs=2"]
    return [*run_overrides, "trainer.max_epochs=1", "logger=none", *extra, *stage]


def test_stage_is_trained_once_and_then_read_from_the_cache(tmp_path, run_overrides, monkeypatch):
    calls = []
    real = stage_module._train_stage
    monkeypatch.setattr(stage_module, "_train_stage", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = train(compose(_overrides(run_overrides, "strategy=finetune"), output_dir=tmp_path / "a"))
    entries = list((tmp_path / "cache" / "stage").iterdir())
    assert len(calls) == 1 and len(entries) == 1 and first["stage_dir"] == str(entries[0])
    assert list((entries[0] / "checkpoints").glob("best-epoch*.ckpt"))
    # a sweep over the transfer step's own knob reuses the stage model (a change to the stage trains anew: below)
    train(compose(_overrides(run_overrides, "strategy=finetune", "strategy.l2sp=0.5"), output_dir=tmp_path / "b"))
    again = train(compose(_overrides(run_overrides, "strategy=finetune"), output_dir=tmp_path / "c"))
    assert len(calls) == 1
    assert again["test/target/ndcg@10"] == first["test/target/ndcg@10"]


def test_a_change_to_the_stage_trains_a_new_one(tmp_path, run_overrides, monkeypatch):
    calls = []
    real = stage_module._train_stage
    monkeypatch.setattr(stage_module, "_train_stage", lambda *a, **k: calls.append(1) or real(*a, **k))
    train(compose(_overrides(run_overrides, "strategy=finetune"), output_dir=tmp_path / "a"))
    train(compose([*_overrides(run_overrides, "strategy=finetune"), "strategy.stage.max_epochs=3"],
                  output_dir=tmp_path / "b"))
    assert len(calls) == 2 and len(list((tmp_path / "cache" / "stage").iterdir())) == 2


def test_a_leftover_temp_entry_from_a_killed_run_is_ignored(tmp_path, run_overrides):
    stage_dir = tmp_path / "cache" / "stage"
    (stage_dir / ".tmp-deadbeef-x").mkdir(parents=True)
    (stage_dir / ".tmp-deadbeef-x" / "meta.json").write_bytes(b"half a file")
    train(compose(_overrides(run_overrides, "strategy=feature_reuse"), output_dir=tmp_path / "a"))
    complete = [p for p in stage_dir.iterdir() if not p.name.startswith(".tmp-")]
    assert len(complete) == 1 and (complete[0] / "meta.json").is_file()


def test_source_ckpt_overrides_the_stage_with_a_run_checkpoint(tmp_path, run_overrides, monkeypatch):
    joint = train(compose(_overrides(run_overrides, "strategy=joint"), output_dir=tmp_path / "joint"))
    monkeypatch.setattr(stage_module, "_train_stage", lambda *a, **k: pytest.fail("the stage must not train"))
    ckpt = tmp_path / "joint" / joint["best_checkpoint"]  # relative to its run folder
    summary = train(compose(_overrides(run_overrides, "strategy=distill", f"strategy.source_ckpt={ckpt}"),
                            output_dir=tmp_path / "distill"))
    assert summary["strategy"] == "Distillation"
    teacher = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]["model.user_encoder.weight"]
    student_ckpt = torch.load(tmp_path / "distill" / summary["best_checkpoint"], map_location="cpu",
                              weights_only=True)["state_dict"]
    assert torch.equal(student_ckpt["teacher.user_encoder.weight"], teacher)  # the teacher is the joint model
    with pytest.raises(ValueError, match="embedding size"):
        train(compose(_overrides(run_overrides, "strategy=distill", f"strategy.source_ckpt={ckpt}",
                                 "strategy.stage.embedding_dim=8"), output_dir=tmp_path / "bad"))


def test_a_smaller_student_learns_from_a_larger_teacher(tmp_path, run_overrides):
    summary = train(compose(_overrides(run_overrides, "strategy=distill", "model.embedding_dim=8",
                                       "strategy.stage.embedding_dim=32"), output_dir=tmp_path / "s"))
    state = torch.load(tmp_path / "s" / summary["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert state["model.user_encoder.weight"].shape[1] == 8 and state["teacher.user_encoder.weight"].shape[1] == 32


def test_the_stage_stops_early_and_keeps_its_best_epoch(tmp_path, run_overrides):
    import csv
    import json
    from pathlib import Path

    summary = train(compose([*run_overrides, "logger=csv", "strategy=distill", "trainer.max_epochs=1",
                             "strategy.stage.max_epochs=60", "strategy.stage.patience=2", "strategy.stage.min_steps=0",
                             "optimizer.lr=0.05"],  # large: the stage overfits within a few epochs
                            output_dir=tmp_path / "run"))
    entry = Path(summary["stage_dir"])
    stage = json.loads((entry / "metrics.json").read_text())
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["validated_on"] == "target" and meta["world_size"] == 1 and meta["monitor"] == "val/target/ndcg@10"
    assert stage["epochs_run"] < 60  # it stopped early ...
    assert stage["epochs_run"] - 1 - stage["best_epoch"] == 2  # ... patience epochs after its best
    rows = list(csv.DictReader((entry / "csv" / "metrics.csv").open()))
    per_epoch = {int(r["epoch"]): float(r["val/target/ndcg@10"]) for r in rows
                 if r.get("val/target/ndcg@10") and int(r["epoch"]) < stage["epochs_run"]}  # not the final validate
    assert len(per_epoch) == stage["epochs_run"]
    assert per_epoch[stage["best_epoch"]] == pytest.approx(stage["val/target/ndcg@10"], abs=1e-6)  # its best epoch's
    assert max(per_epoch.values()) == per_epoch[stage["best_epoch"]] > per_epoch[stage["epochs_run"] - 1]
    assert summary["stage/val/target/ndcg@10"] == stage["val/target/ndcg@10"]  # ... recorded by the consuming run
    assert summary["stage/best_epoch"] == stage["best_epoch"] == meta["best_epoch"]
    # the teacher the run distilled from is the stage's best checkpoint
    best = torch.load(entry / meta["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    run = torch.load(tmp_path / "run" / summary["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert torch.equal(run["teacher.user_encoder.weight"], best["model.user_encoder.weight"])


def test_under_ddp_the_stage_trains_once_across_both_processes(tmp_path, run_overrides):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run([str(Path(sys.executable).parent / "translearn-train"), *_overrides(run_overrides),
                           "strategy=finetune", "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={tmp_path / 'r'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (entry,) = (tmp_path / "cache" / "stage").iterdir()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["epochs"] == 2 and meta["validated_on"] == "source"
