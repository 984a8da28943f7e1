"""Evaluation metrics: top-k ranking metrics over `rank_targets` output, and rating errors."""

from translearn.metrics.direction import metric_mode
from translearn.metrics.ranking import (
    AUC,
    MRR,
    NDCG,
    HitRate,
    Precision,
    RankedTargets,
    Recall,
    rank_targets,
    ranking_metrics,
)
from translearn.metrics.rating import MAE, RMSE, rating_metrics

__all__ = [
    "AUC",
    "MAE",
    "MRR",
    "NDCG",
    "RMSE",
    "HitRate",
    "Precision",
    "RankedTargets",
    "Recall",
    "rank_targets",
    "ranking_metrics",
    "metric_mode",
    "rating_metrics",
]
