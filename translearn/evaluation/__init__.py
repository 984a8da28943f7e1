"""Evaluation in one place, for training and every tool (``translearn-eval``, ``-recommend``, ``-features``,
``-probe``): named evaluation loaders (``loaders``), the ``Evaluator`` (``engine``: metric sets, masking
and ranking, per-user rows), what a strategy scores (``scoring``) and where it runs (``device``).

The names are imported on first use (PEP 562), so that the data module can import ``loaders`` without
pulling in the metrics and models."""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "EvalLoader": "loaders", "eval_loaders": "loaders", "trainer_loaders": "loaders",
    "Evaluator": "engine",
    "candidate_scores": "scoring", "full_scores": "scoring", "source_tower_missing": "scoring",
    "default_device": "device", "move_batch": "device", "resolve_device": "device", "trainer_device": "device",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'translearn.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"translearn.evaluation.{_HOME[name]}"), name)
    globals()[name] = value
    return value
