"""Results are never silently wrong: divergence, resume, checkpoints, digests, monitor direction."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

import translearn.train as train_module
from translearn.build import build_data, build_trainer
from translearn.cli.config import compose
from translearn.cli.evaluate import main as evaluate_main
from translearn.cli.evaluate import pick_checkpoint
from translearn.data.datamodule import CrossDomainDataModule
from translearn.errors import DivergedError
from translearn.metrics import metric_mode
from translearn.train import config_digest, train

OWN_CACHE = True  # run_overrides: a refusal is checked to leave no stage in its cache


def test_a_nan_loss_weight_is_refused_before_training(tmp_path, run_overrides):
    with pytest.raises(ValueError, match=r"strategy\.lam=nan: expected a finite number"):
        train(compose([*run_overrides, "strategy.lam=nan"], output_dir=tmp_path / "run"))


def test_a_diverging_optimizer_stops_the_run_naming_epoch_and_term(tmp_path, run_overrides):
    with pytest.raises(DivergedError, match=r"diverged at epoch \d+, step \d+: non-finite loss_s=.*loss_t=") as err:
        train(compose([*run_overrides, "optimizer=sgd", "optimizer.lr=1e30"], output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.json").exists()
    # The run stops inside the diverged epoch, before it is validated: no checkpoint can hold or select it.
    diverged = int(re.search(r"epoch (\d+)", str(err.value)).group(1))
    saved = [int(p.stem[len("best-epoch"):]) for p in (tmp_path / "run").rglob("best-epoch*.ckpt")]
    assert all(epoch < diverged for epoch in saved)


def test_a_diverging_source_stage_stops_the_run(tmp_path, run_overrides):
    with pytest.raises(DivergedError, match=r"source stage diverged at epoch 0, step \d+: non-finite"):
        train(compose([*run_overrides, "strategy=finetune", "strategy.stage.max_epochs=1", "optimizer=sgd",
                       "optimizer.lr=1e30"], output_dir=tmp_path / "run"))


def test_an_epoch_draws_the_same_rows_and_negatives_whatever_came_before(tmp_path, run_overrides):
    cfg = compose(run_overrides, output_dir=tmp_path / "run")
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    module = CrossDomainDataModule(prepared, [prepared.target, *prepared.sources], batch_size=64, seed=5)

    def epoch(loader, e: int) -> list[dict]:
        loader.sampler.set_epoch(e)
        return list(loader)

    def flat(batches: list[dict]) -> list[torch.Tensor]:
        return [t for b in batches for part in b.values() for t in part.values()]

    running = module.train_dataloader()
    seen = [epoch(running, e) for e in range(3)]
    fresh = epoch(module.train_dataloader(), 2)
    assert all(torch.equal(a, b) for a, b in zip(flat(seen[2]), flat(fresh), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(flat(seen[1]), flat(seen[2]), strict=True))
    torch.rand(3)  # the global torch RNG is reseeded per epoch too (dropout in sequence models)
    running.sampler.set_epoch(4)
    first = torch.rand(3)
    running.sampler.set_epoch(4)
    assert torch.equal(first, torch.rand(3))


# ---- resume, last.ckpt, copied run folders ------------------------------------------------------------------


class _CtrlC(pl.Callback):
    """Presses Ctrl+C (raises KeyboardInterrupt) at the second step of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            raise KeyboardInterrupt


def _with_callback(monkeypatch, callback: pl.Callback) -> None:
    def build(cfg, **overrides):
        trainer = build_trainer(cfg, **overrides)
        trainer.callbacks.append(callback)
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", build)


def _metrics(run: Path) -> dict:
    saved = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in saved.items() if k not in ("wall_time_s", "resumed_from", "resume_changed")}


def test_an_interrupted_and_resumed_run_reproduces_the_uninterrupted_run_exactly(tmp_path, run_overrides,
                                                                                monkeypatch):
    overrides = [*run_overrides, "trainer.max_epochs=3", "optimizer.lr=0.01"]
    train(compose(overrides, output_dir=tmp_path / "whole"))
    sigint = signal.getsignal(signal.SIGINT)
    _with_callback(monkeypatch, _CtrlC(epoch=1))
    try:
        with pytest.raises(SystemExit):  # Lightning turns Ctrl+C into a graceful shutdown and exit(1)
            train(compose(overrides, output_dir=tmp_path / "cut"))
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl+C after the first
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 0
    monkeypatch.undo()
    train(compose([*overrides, f"resume={tmp_path / 'cut'}"], output_dir=tmp_path / "resumed"))
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["resume_changed"] == {}
    whole, resumed = _metrics(tmp_path / "whole"), _metrics(tmp_path / "resumed")
    assert whole["epochs_run"] == 3
    assert resumed == whole  # every val/test metric, best_epoch, epochs_run, the relative best path, the digest
    assert (tmp_path / "resumed" / whole["best_checkpoint"]).is_file()  # the best file was carried over


def test_last_ckpt_holds_the_final_epoch_while_best_is_earlier(tmp_path, run_overrides):
    # With lr 0 the metric never improves after epoch 0, so the best checkpoint stays at epoch 0.
    out = tmp_path / "run"
    summary = train(compose([*run_overrides, "trainer.max_epochs=3", "optimizer.lr=0.0"], output_dir=out))
    assert summary["best_epoch"] == 0 and summary["epochs_run"] == 3
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2
    assert summary["best_checkpoint"] == "checkpoints/best-epoch000.ckpt"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


def test_a_copied_run_folder_evaluates_its_own_checkpoint(tmp_path, run_overrides):
    original, copy = tmp_path / "original", tmp_path / "copy"
    summary = train(compose(run_overrides, output_dir=original))
    (original / ".hydra").mkdir()
    OmegaConf.save(compose(run_overrides, output_dir=original), original / ".hydra" / "config.yaml")
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    assert pick_checkpoint(copy, "best") == copy / summary["best_checkpoint"]
    assert evaluate_main([str(copy), "--out", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["checkpoint"] == str(copy / summary["best_checkpoint"])
    assert again["test/target/ndcg@10"] == pytest.approx(summary["test/target/ndcg@10"], abs=1e-6)


# ---- model fixing without overlap, digests, monitor direction ------------------------------------------------


def test_freezing_user_vectors_without_shared_users_is_refused(tmp_path, run_overrides):
    # An id model without shared users is refused by the bridge rule (strategies.bridge) before the source
    # stage is trained; the freeze-specific message of FineTune itself is checked in test_facts.py.
    cfg = compose([*run_overrides, "strategy=finetune", "strategy.freeze=[user_encoder]",
                   "data.dataset.overlap=0.0", "strategy.stage.max_epochs=1"], output_dir=tmp_path / "run")
    with pytest.raises(ValueError, match=r"FineTune reads user vectors .*no users in common.*no content bridge"):
        train(cfg)
    assert not (tmp_path / "cache" / "stage").exists()  # refused before any stage training


def test_digest_ignores_paths_and_follows_settings(tmp_path):
    def digest(root: str, *extra: str) -> str:
        overrides = [f"paths.cache_dir={root}/cache", f"paths.log_dir={root}/logs", f"paths.data_root={root}/data",
                     "data=arts_office", *extra]
        return config_digest(compose(overrides, output_dir=f"{root}/run"))

    here, there = digest("/machine/a"), digest("/elsewhere/b", "resume=/elsewhere/b/old")
    assert here == there  # data.dataset.root, the run folder, logs, cache and resume differ; the settings do not
    assert digest("/machine/a", "strategy.lam=0.5") != here
    assert digest("/machine/a", "seed=1") != here


def test_digest_of_two_runs_is_equal(tmp_path, run_overrides):
    first = train(compose(run_overrides, output_dir=tmp_path / "a"))
    moved = [o.replace(str(tmp_path), str(tmp_path / "elsewhere")) for o in run_overrides]
    second = train(compose(moved, output_dir=tmp_path / "b"))
    assert first["config_digest"] == second["config_digest"]


@pytest.mark.parametrize(("monitor", "mode"), [("val/target/rmse", "min"), ("val/target/mae", "min"),
                                               ("train/loss_t", "min"), ("val/target/ndcg@10", "max"),
                                               ("val/target/auc", "max"), ("test/arts/hr@20", "max")])
def test_checkpoint_and_early_stopping_modes_follow_the_monitor(monitor, mode):
    assert metric_mode(monitor) == mode
    cfg = compose([f"monitor={monitor}"])
    assert cfg.callbacks.model_checkpoint.mode == mode and cfg.callbacks.early_stopping.mode == mode


def test_an_unknown_monitor_direction_is_an_error():
    with pytest.raises(ValueError, match="config key 'monitor'.*callbacks.model_checkpoint.mode"):
        metric_mode("val/target/coverage")


def test_monitoring_rmse_selects_the_lowest_validation_rmse(tmp_path, run_overrides):
    out = tmp_path / "run"
    summary = train(compose([*run_overrides, "loss=mse",
                             "monitor=val/target/rmse", "trainer.max_epochs=4", "optimizer.lr=0.01",
                             "strategy=target_only"], output_dir=out))
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    per_epoch = {int(r["epoch"]): float(r["val/target/rmse"]) for r in rows if r.get("val/target/rmse")}
    best = min(per_epoch, key=per_epoch.get)
    assert best > 0 and summary["best_epoch"] == best  # a later, better epoch; mode=max would keep epoch 0


def test_on_an_accelerator_divergence_is_read_from_the_running_sums_at_log_steps(tmp_path, run_overrides):
    from translearn.build import build_model, build_strategy

    cfg = compose([*run_overrides, "strategy=target_only"], output_dir=tmp_path / "run")
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    strategy._device = torch.device("cuda", 0)  # only the device type is read: no host sync per step there
    finite = {"loss": torch.tensor(1.0), "loss_t": torch.tensor(1.0)}
    strategy._train_sums = {"loss": torch.tensor(float("nan")), "loss_t": torch.tensor(float("inf"))}
    strategy._check_finite(finite, batch_idx=0, every=2)  # not a check step: no sync, no error yet
    with pytest.raises(DivergedError, match=r"epoch 0, by step 1: non-finite loss_t"):
        strategy._check_finite(finite, batch_idx=1, every=2)
