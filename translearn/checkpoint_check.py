"""Read a training checkpoint and check that it fits the model built for this run, before using it.

Used by ``translearn-eval`` and by ``resume=``: a truncated file, a file that is not a checkpoint, or a
checkpoint trained on other data (other user or item counts, other model) is one ``CheckpointError``
naming the file and what is wrong, instead of a pickle or ``size mismatch`` traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from translearn.errors import CheckpointError

_SHOWN = 4  # how many key names an error lists
_USERS = re.compile(r"(^|\.)user_encoder\.(weight|embedding\.weight)$")
_ITEMS = re.compile(r"(^|\.)item_encoders\.([^.]+)\.(weight|embedding\.weight)$")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict with a ``state_dict``; a CheckpointError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file", file=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle/EOF errors of a damaged or foreign file
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Weights only" in str(err):  # not torch's advice to unpickle anything
            detail = "it holds objects other than weights, which translearn does not unpickle"
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint (truncated, or not a .ckpt file: "
                              f"{detail[:200]})", file=path) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} is not a translearn training checkpoint (it has no state_dict)",
                              file=path)
    return ckpt


def _names(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _shape_problem(key: str, saved: tuple[int, ...], wanted: tuple[int, ...]) -> str:
    if saved[1:] == wanted[1:] and (m := _USERS.search(key)):
        return f"has {saved[0]:,} users, the data has {wanted[0]:,}"
    if saved[1:] == wanted[1:] and (m := _ITEMS.search(key)):
        return f"has {saved[0]:,} items in domain {m.group(2)!r}, the data has {wanted[0]:,}"
    return f"has {key} of shape {list(saved)}, this run's model has {list(wanted)}"


def check_state(path: str | Path, state: dict[str, torch.Tensor], module: nn.Module) -> None:
    """CheckpointError unless ``state`` has exactly ``module``'s weights, with the same shapes."""
    own = module.state_dict()
    wrong = [k for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        users = [k for k in wrong if _USERS.search(k)]
        key = (users or wrong)[0]
        problem = _shape_problem(key, tuple(state[key].shape), tuple(own[key].shape))
        raise CheckpointError(f"checkpoint {path} {problem}: it was trained on another data set or model "
                              f"({len(wrong)} weight(s) differ in shape: {_names(wrong)})", file=path)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = ([f"lacks {_names(missing)}"] if missing else []) + (
            [f"has weights this model does not: {_names(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"checkpoint {path} was made for another model or strategy: it {'; '.join(parts)}",
                              file=path)


def load_checked(path: str | Path, module: nn.Module) -> dict[str, Any]:
    """Read the checkpoint at ``path``, check it fits ``module`` and load its weights; returns the checkpoint."""
    ckpt = read_checkpoint(path)
    check_state(path, ckpt["state_dict"], module)
    module.load_state_dict(ckpt["state_dict"])
    return ckpt
