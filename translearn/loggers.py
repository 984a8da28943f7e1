"""Experiment logger factories used by the ``logger`` config group (W&B: ``translearn.wandb_logging``)."""

from __future__ import annotations

from translearn.wandb_logging import wandb_logger

__all__ = ["wandb_logger"]
