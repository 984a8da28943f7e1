"""Stage keys (``strategy.stage.*``) are settable for every strategy, so one sweep can mix strategies
with and without a source stage."""

from __future__ import annotations

import json
import re

import pytest

from translearn.cli.config import compose, group_options

OWN_CACHE = True  # run_overrides: the sweep trains (and logs) its own stage


@pytest.mark.parametrize("strategy", group_options("strategy"))
def test_every_strategy_accepts_stage_keys(strategy, tmp_path):
    cfg = compose([f"strategy={strategy}", "strategy.stage.max_epochs=7", "strategy.stage.lam=0.5"],
                  output_dir=tmp_path)
    assert cfg.strategy.stage.max_epochs == 7 and cfg.strategy.stage.lam == 0.5


def test_a_sweep_mixing_target_only_and_finetune_sets_the_stage_epochs(tmp_path, run_overrides, run_cli):
    sweep = tmp_path / "sweep"
    done = run_cli("translearn-train", ["-m", *run_overrides, "trainer.max_epochs=1", "strategy=target_only,finetune",
                                        "strategy.stage.max_epochs=3", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = sorted(json.loads(p.read_text())["strategy"] for p in sweep.glob("*/metrics.json"))
    assert found == ["FineTune", "TargetOnly"]
    # The fine-tuning job trained its stage for the swept number of epochs.
    assert re.search(r"source stage \(sources\) trained in [0-9.]+s: 3 epochs", done.stdout), done.stdout[-2000:]
