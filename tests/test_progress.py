"""Visible progress: a line per epoch (main run and source stage), the preprocessing summary at start-up,
and a progress bar only on terminals."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from translearn.build import build_trainer
from translearn.cli.config import compose

BIN = Path(sys.executable).parent
ENV = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
OWN_CACHE = True  # run_overrides: the data is prepared and the stage trained (and logged) by the run itself


def test_console_run_logs_each_epoch_stage_epoch_and_the_preprocessing_report(tmp_path, run_overrides, run_cli):
    run_dir = tmp_path / "run"
    done = run_cli("translearn-train", [*run_overrides, "trainer.max_epochs=3", "strategy=finetune",
                                        "strategy.stage.max_epochs=2", "logger=csv", f"hydra.run.dir={run_dir}"],
                   tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    epochs = re.findall(r"epoch (\d+)/3 loss (\d+\.\d+) val/target/ndcg@10 (\d+\.\d+) \d+\.\ds", out)
    assert [e[0] for e in epochs] == ["1", "2", "3"], out[-3000:]
    # The logged values are the run's own: the CSV logger's epoch rows hold the same numbers.
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    def column(name: str) -> list[float]:
        cells = [r.split(",")[header.index(name)] for r in rows[1:]]
        return [float(c) for c in cells if c]

    ndcg, loss = column("val/target/ndcg@10"), column("train/loss")
    assert [float(e[2]) for e in epochs] == [round(v, 4) for v in ndcg[:3]]  # (the 4th row: the final validate)
    assert [float(e[1]) for e in epochs] == [round(v, 4) for v in loss]
    # the stage's own epochs, validated on its domain (the source here)
    stage = r"source stage epoch (\d)/2 loss (\d+\.\d{4}) val/source/ndcg@10 \d\.\d{4} \d+\.\ds"
    assert [e[0] for e in re.findall(stage, out)] == ["1", "2"], out[-3000:]
    assert all(0 < float(e[1]) < 10 for e in re.findall(stage, out))  # this epoch's loss, not a NaN
    # The preprocessing report appears before training starts, line by line as translearn-data has it.
    manifest = json.loads(next((tmp_path / "cache").glob("*/manifest.json")).read_text())
    assert manifest["report"]
    for line in manifest["report"]:
        assert f"preprocessing: {line}" in out
    assert out.index("preprocessing: split(") < out.index("epoch 1/3")


def test_progress_bar_follows_the_terminal_unless_set(tmp_path, run_overrides, monkeypatch):
    cfg = compose(run_overrides, output_dir=tmp_path)
    assert cfg.trainer.enable_progress_bar is None
    monkeypatch.setattr("translearn.build.is_tty", lambda: True)
    assert build_trainer(cfg).progress_bar_callback is not None
    monkeypatch.setattr("translearn.build.is_tty", lambda: False)
    assert build_trainer(cfg).progress_bar_callback is None
    monkeypatch.setattr("translearn.build.is_tty", lambda: True)
    forced = compose([*run_overrides, "trainer.enable_progress_bar=false"], output_dir=tmp_path)
    assert build_trainer(forced).progress_bar_callback is None


def test_callbacks_none_still_logs_epochs(tmp_path, run_overrides, caplog):
    from translearn.train import train

    with caplog.at_level(logging.INFO, logger="translearn.progress"):
        train(compose([*run_overrides, "callbacks=none", "strategy=target_only"], output_dir=tmp_path / "r"))
    lines = [r.getMessage() for r in caplog.records if r.name == "translearn.progress"]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2 loss ") and "val/target/ndcg@10 0." in lines[1]


def test_make_install_says_what_it_does(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}"], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("echo \"==> [")]
    assert len(steps) == 3 and "torch" in steps[1]
    pip = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert len(pip) == 2 and not any(" -q" in line for line in pip)  # pip's own progress stays visible
