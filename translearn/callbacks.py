"""Lightning callbacks with translearn's semantics: ``RunCheckpoint`` and ``EarlyStopping``.

``RunCheckpoint`` is Lightning's ``ModelCheckpoint`` that keeps model selection exact across a resume.

A resumed run writes into a new run folder. Lightning then forgets the resumed run's best score (it
only restores it when the checkpoint folder is the same), so the first epoch after the resume becomes
"best" whatever its score. ``RunCheckpoint`` restores the score and copies the best checkpoint file(s)
into the new folder, so the new run selects over all epochs and its folder is complete on its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping as LightningEarlyStopping
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason

from translearn.cache import atomic_write_file


def selecting(trainer: pl.Trainer) -> bool:
    """Whether this epoch takes part in model selection and early stopping: from the module's
    ``selection_from_epoch`` on (0 when it has none). A strategy with a schedule (``ptupcdr``'s target
    phase, then its meta phase) names the epoch from which its validation value means what it monitors."""
    return trainer.current_epoch >= getattr(trainer.lightning_module, "selection_from_epoch", 0)


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (same arguments) whose state survives a resume into another folder; its best
    checkpoint is chosen among the epochs from the strategy's ``selection_from_epoch`` on (``selecting``)."""

    _resumed_from: str | None = None

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.monitor is None or selecting(trainer):  # the monitor-less one (last.ckpt) saves every epoch
            super()._save_topk_checkpoint(trainer, monitor_candidates)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._resumed_from = trainer.ckpt_path  # known before the checkpoint's callback states are loaded

    def _carry_over(self, path: str) -> str:
        """Copy a best checkpoint of the resumed run into this run's folder; return the new path."""
        name = Path(path).name
        # A copied run folder still names the original's files: prefer the file beside the resumed checkpoint.
        near = [Path(self._resumed_from).parent / name] if self._resumed_from else []
        found = next((p for p in [*near, Path(path)] if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"config key 'resume': the resumed run's best checkpoint {name} is neither at "
                                    f"{path} nor beside the resumed checkpoint; model selection needs it")
        target = Path(self.dirpath) / name
        if found.resolve() != target.resolve():
            with found.open("rb") as src:
                atomic_write_file(target, lambda dst: shutil.copyfileobj(src, dst))
        return str(target)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.dirpath is None or state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        best_k = state_dict.get("best_k_models", {}) if self.monitor else {}
        moved = {path: self._carry_over(path) for path in best_k}
        super().load_state_dict({
            **state_dict,
            "dirpath": self.dirpath,
            "best_k_models": {moved[path]: score for path, score in best_k.items()},
            "best_model_path": moved.get(state_dict.get("best_model_path", ""), ""),
            "kth_best_model_path": moved.get(state_dict.get("kth_best_model_path", ""), ""),
            "last_model_path": "",  # the other folder's files are never removed from here
        })


class EarlyStopping(LightningEarlyStopping):
    """Lightning's ``EarlyStopping`` (same arguments) that may end a run only after ``min_steps`` optimiser steps.

    Patience counts validation checks, i.e. epochs. On a sparse target an epoch is a handful of steps, and
    a model still at its initial loss looks converged after ``patience`` epochs; the floor keeps such a run
    training. Improvements are tracked before the floor as well, so once the floor is passed the run stops
    at the first check that has waited ``patience`` checks since the best one. A non-finite metric or a
    ``stopping_threshold``/``divergence_threshold`` still stops at once. ``min_steps`` counts
    ``trainer.global_step`` (the same on every DDP rank). Epochs before the strategy's
    ``selection_from_epoch`` are not checked at all (``selecting``): patience counts from that epoch.
    """

    def __init__(self, *args: Any, min_steps: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if min_steps < 0:
            raise ValueError(f"callbacks.early_stopping.min_steps must be >= 0, got {min_steps}")
        self.min_steps = int(min_steps)
        self._global_step = 0

    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        if not selecting(trainer):
            return
        self._global_step = trainer.global_step
        super()._run_early_stopping_check(trainer)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        should_stop, reason = super()._evaluate_stopping_criteria(current)
        if self.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED and self._global_step < self.min_steps:
            self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
            return False, (f"{self.monitor} has not improved for {self.wait_count} checks, but the run has made "
                           f"{self._global_step} of at least {self.min_steps} steps (min_steps): it goes on")
        return should_stop, reason


class RecordInCheckpoints(pl.Callback):
    """Puts the run record (``run_record.make_record``: data keys, config digest, settings) into every checkpoint
    the trainer saves (best, last, untrained), under ``checkpoint["translearn"]``."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        from translearn.run_record import RECORD_KEY

        checkpoint[RECORD_KEY] = self.record
