"""How a stage runs inside the calling process: its own random state (``own_rng``), its log file
(``log_file``), and whether it trains in this process alone (``single_process``)."""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from translearn.stage.spec import plain


@contextlib.contextmanager
def own_rng(seed: int) -> Iterator[None]:
    """Seed every generator with ``seed`` inside, and put the caller's states back after: the run that trains
    the stage and the runs that read it from the cache go on from the same random state."""
    states = random.getstate(), np.random.get_state()
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    with torch.random.fork_rng(devices=[]):
        pl.seed_everything(seed, workers=True, verbose=False)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def log_file(path: Path | None) -> Iterator[None]:
    """Copy this process's log lines into ``path`` (the stage's ``train.log``) while inside."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def single_process(trainer: Any) -> bool:
    """Whether the stage trains in this process alone (no DDP over several devices or nodes)."""
    t = dict(plain(trainer) or {})
    devices, strategy = t.get("devices", 1), str(t.get("strategy") or "auto")
    several = devices not in (1, "1", [0], None) or int(t.get("num_nodes") or 1) > 1
    return not (several or "ddp" in strategy)
