"""Rating-prediction metrics (explicit feedback) with sum states, correct under DDP."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class _RatingMetric(Metric):
    """Base: accumulates a sum of per-pair errors in `_sum_state` and the pair count in `count`."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    name = ""
    _sum_state = ""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state(self._sum_state, default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0), dist_reduce_fx="sum")

    @staticmethod
    def _error(diff: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: float [N] predicted ratings; target: [N] true ratings."""
        if preds.shape != target.shape:
            raise ValueError(
                f"preds and target must have the same shape, got {preds.shape} and {target.shape}"
            )
        diff = preds.detach().reshape(-1).float() - target.detach().reshape(-1).float()
        state = getattr(self, self._sum_state)
        setattr(self, self._sum_state, state + self._error(diff).sum().to(state.dtype))
        self.count += diff.numel()


class MAE(_RatingMetric):
    """Mean absolute error: sum |pred - target| / N."""

    name = "mae"
    _sum_state = "sum_abs"

    @staticmethod
    def _error(diff: Tensor) -> Tensor:
        return diff.abs()

    def compute(self) -> Tensor:
        return self.sum_abs / self.count.clamp(min=1.0)


class RMSE(_RatingMetric):
    """Root mean squared error: sqrt(sum (pred - target)^2 / N)."""

    name = "rmse"
    _sum_state = "sum_sq"

    @staticmethod
    def _error(diff: Tensor) -> Tensor:
        return diff.square()

    def compute(self) -> Tensor:
        return torch.sqrt(self.sum_sq / self.count.clamp(min=1.0))


def rating_metrics() -> dict[str, Metric]:
    """Build ``{"mae": MAE(), "rmse": RMSE()}``."""
    return {"mae": MAE(), "rmse": RMSE()}
