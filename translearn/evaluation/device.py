"""Where evaluation runs: the ``--device`` of the tools, and moving batches onto it."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from translearn.errors import ConfigError


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | None = None, option: str = "--device") -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ...; None: ``default_device()``) as a device this machine has;
    an unknown or unavailable device is a ``ConfigError`` naming ``option``."""
    name = default_device() if name is None else str(name)
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{option}: unknown device {name!r} (use cpu, cuda or cuda:N)", config_key=option) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{option} {name}: no CUDA device is available on this machine (use --device cpu)",
                              config_key=option)
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{option} {name}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})",
                              config_key=option)
    elif device.type != "cpu":
        raise ConfigError(f"{option}: unsupported device {name!r} (use cpu, cuda or cuda:N)", config_key=option)
    return device


def trainer_device(device: torch.device) -> dict[str, Any]:
    """``pl.Trainer`` arguments that run on exactly ``device``."""
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    return {"accelerator": "cpu", "devices": 1}


def move_batch(batch: Any, device: torch.device) -> Any:
    """A batch on ``device``: a flat dict of tensors (evaluation rows, a query), or a training batch
    ``{domain: {key: tensor}}`` whose parts shared by several domains (one interleaved sequence batch) stay
    one; tensors already there are not copied. None for anything else (Lightning's generic walk then)."""
    def move(part: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v if v.device == device else v.to(device, non_blocking=True) for k, v in part.items()}

    if isinstance(batch, dict) and batch and all(isinstance(v, dict) for v in batch.values()):
        moved: dict[int, dict] = {}
        return {k: moved.setdefault(id(v), move(v)) for k, v in batch.items()}
    if isinstance(batch, dict) and all(isinstance(v, Tensor) for v in batch.values()):
        return move(batch)
    return None
