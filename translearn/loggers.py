"""Experiment logger factories used by the ``logger`` config group."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger


def wandb_logger(project: str = "translearn", save_dir: str | Path = ".", group: str | None = None,
                 tags: Sequence[str] = (), name: str | None = None, offline: bool | None = None,
                 **kwargs: object) -> WandbLogger:
    """A W&B logger that runs offline when no API key is configured (``WANDB_API_KEY`` or
    ``WANDB_MODE=offline``); offline runs are synced later with ``wandb sync``."""
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not (
            os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").is_file())
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, save_dir=str(save_dir), group=group, tags=list(tags), name=name,
                       offline=offline, **kwargs)
