"""Evaluation metrics: top-k ranking metrics over `rank_targets` output, and rating errors.

The names are imported on first use (PEP 562), so that ``translearn.metrics.direction`` (read by the CLIs'
config checks) does not pull torchmetrics and torch into a process that only parses its arguments."""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "metric_mode": "direction",
    **{name: "ranking" for name in ("AUC", "MRR", "NDCG", "HitRate", "Precision", "RankedTargets", "Recall",
                                    "rank_targets", "ranking_metrics")},
    **{name: "rating" for name in ("MAE", "RMSE", "rating_metrics")},
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'translearn.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"translearn.metrics.{_HOME[name]}"), name)
    globals()[name] = value
    return value
