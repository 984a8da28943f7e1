"""trainer.max_epochs=0: no training; the strategy's starting model is evaluated and saved (zero-shot)."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from translearn.cli.config import compose
from translearn.errors import ConfigError
from translearn.train import train

OWN_CACHE = True  # run_overrides: the tests look into their own cache


def _run(tmp_path, run_overrides, *extra: str) -> dict:
    cfg = compose([*run_overrides, "logger=none", *extra], output_dir=tmp_path / "run")
    summary = train(cfg)
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")  # what the console script saves
    return summary


def test_zero_shot_finetune_evaluates_the_source_stage_model_as_it_is(tmp_path, run_overrides):
    summary = _run(tmp_path, run_overrides, "strategy=finetune", "strategy.stage.max_epochs=2", "trainer.max_epochs=0")
    assert summary["epochs_run"] == 0 and summary["best_epoch"] is None
    assert summary["best_checkpoint"] == "checkpoints/untrained.ckpt"
    saved = torch.load(tmp_path / "run" / summary["best_checkpoint"], map_location="cpu", weights_only=False)
    model = {k.removeprefix("model."): v for k, v in saved["state_dict"].items() if k.startswith("model.")}
    (stage_entry,) = [p for p in (tmp_path / "cache" / "stage").iterdir() if not p.name.startswith(".tmp-")]
    stage_ckpt = stage_entry / json.loads((stage_entry / "meta.json").read_text())["checkpoint"]
    stage = {k.removeprefix("model."): v for k, v in torch.load(stage_ckpt, map_location="cpu",
                                                                 weights_only=True)["state_dict"].items()}
    shared = [k for k in stage if k in model and stage[k].shape == model[k].shape]
    assert "user_encoder.weight" in shared
    for name in shared:  # what fine-tuning copies is exactly the stage's: nothing trained it further
        torch.testing.assert_close(model[name], stage[name], rtol=0, atol=0)
    # the saved model is the evaluated one: translearn-eval's code path on it gives the same numbers
    from translearn.cli.evaluate import main as eval_main

    assert eval_main([str(tmp_path / "run"), "--split", "test", "--out", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["checkpoint"].endswith("untrained.ckpt")
    assert evaluated["test/target/ndcg@10"] == pytest.approx(summary["test/target/ndcg@10"], abs=1e-7)
    # one epoch of fine-tuning moves the copied weights, so its numbers are not the zero-shot ones
    tuned = _run(tmp_path / "tuned", run_overrides, "strategy=finetune", "strategy.stage.max_epochs=2",
                 "trainer.max_epochs=1")
    assert tuned["epochs_run"] == 1 and tuned["test/target/ndcg@10"] != summary["test/target/ndcg@10"]


@pytest.mark.parametrize("value", [-2, 1.5, True])
def test_other_epoch_counts_are_refused(tmp_path, run_overrides, value):
    with pytest.raises(ConfigError, match=r"trainer.max_epochs' must be a whole number >= 1 \(0: no training"):
        _run(tmp_path, run_overrides, f"trainer.max_epochs={value}")
