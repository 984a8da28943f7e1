"""Visible progress: one log line per training epoch, and whether a progress bar makes sense here.

``trainer.enable_progress_bar: null`` (the default) shows Lightning's bar only when stdout is a terminal
(``is_tty``), so log files and CI output stay free of bar redraws.

``EpochLog`` is a Lightning callback that logs (through Python logging, so it reaches the console and
Hydra's job log whatever the metrics logger is)::

    epoch 3/30 loss 0.4123 val/target/ndcg@10 0.0812 1.2s

Lightning calls plain callbacks' ``on_train_epoch_end`` before the strategy logs its epoch loss, so the
line for an epoch is written when the next epoch starts (or training ends), when both are known.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def is_tty() -> bool:
    """Whether stdout is an interactive terminal (a progress bar helps there, and clutters log files)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class EpochLog(pl.Callback):
    """Log one line per training epoch: epoch, mean train loss, the monitored metric, seconds.

    monitor: the validation metric to show (e.g. ``val/target/ndcg@10``); None shows the loss only
    name:    what trains, put before ``epoch`` (``source stage`` for a stage run); empty for a run
    """

    def __init__(self, monitor: str | None = None, name: str = "") -> None:
        self.monitor = monitor
        self.name = name
        self._start = 0.0
        self._pending: tuple[int, float] | None = None  # (epoch, seconds) of an epoch not yet logged

    def line(self, trainer: pl.Trainer, epoch: int, seconds: float) -> str:
        """The progress line of ``epoch`` (0-based) from the trainer's current callback metrics."""
        metrics = trainer.callback_metrics
        parts = [self.name] if self.name else []
        parts.append(f"epoch {epoch + 1}/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0
                     else f"epoch {epoch + 1}")
        loss = _number(metrics.get("train/loss"))
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if self.monitor:
            value = _number(metrics.get(self.monitor))
            parts.append(f"{self.monitor} {value:.4f}" if value is not None else f"{self.monitor} -")
        parts.append(f"{seconds:.1f}s")
        return " ".join(parts)

    def _flush(self, trainer: pl.Trainer) -> None:
        if self._pending is not None and trainer.is_global_zero:
            log.info(self.line(trainer, *self._pending))
        self._pending = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation of this epoch has run; its train loss is logged right after this hook.
        self._pending = (trainer.current_epoch, time.perf_counter() - self._start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush(trainer)
