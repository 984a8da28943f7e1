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


def move_batch(part: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """A flat dict of tensors on ``device`` (tensors already there are not copied)."""
    return {k: v if v.device == device else v.to(device, non_blocking=True) for k, v in part.items()}
