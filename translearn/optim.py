"""LazyAdam: Adam whose cost per step follows the rows a batch touches, not the size of the id tables.

Dense Adam updates every row of every embedding table at every step, so with a million users one MF
step costs ~250 ms on this CPU whatever the batch size, and an epoch grows with users x steps
(quadratically in users). With ``optimizer=lazy_adam`` the strategy switches its id embeddings
(:class:`~translearn.models.encoders.IdEmbedding`) to sparse gradients, and this optimizer updates only
the rows a step touched, with Adam's rule on those rows (the moments of untouched rows do not decay,
as in TensorFlow's LazyAdam and torch's SparseAdam). Parameters with dense gradients (biases, MLPs,
an item table scored in full) get the ordinary Adam update. ``weight_decay`` (L2 added to the
gradient) applies to the rows updated.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer


class LazyAdam(Optimizer):
    """Adam over dense and sparse gradients; sparse ones update only their rows (see the module doc)."""

    sparse_gradients = True  # read by TransferStrategy.configure_optimizers: switch id embeddings to sparse

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"optimizer (LazyAdam): needs lr > 0, eps > 0, weight_decay >= 0 and betas in [0, 1), "
                             f"got lr={lr}, eps={eps}, weight_decay={weight_decay}, betas={betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201  (torch's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                if p.grad.is_sparse:
                    _sparse_update(p, p.grad.coalesce(), state, group)
                else:
                    _dense_update(p, p.grad, state, group)
        return loss


def _dense_update(p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
    beta1, beta2 = group["betas"]
    if group["weight_decay"]:
        grad = grad.add(p, alpha=group["weight_decay"])
    state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    p.sub_(_direction(state["exp_avg"], state["exp_avg_sq"], state["step"], group))


def _sparse_update(p: Tensor, grad: Tensor, state: dict, group: dict) -> None:
    """Adam on the rows ``grad`` names (``grad`` coalesced: indices [1, R], values [R, D])."""
    beta1, beta2 = group["betas"]
    rows, values = grad.indices()[0], grad.values()
    if group["weight_decay"]:
        values = values + group["weight_decay"] * p[rows]
    exp_avg = state["exp_avg"][rows].mul_(beta1).add_(values, alpha=1 - beta1)
    exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
    state["exp_avg"][rows] = exp_avg
    state["exp_avg_sq"][rows] = exp_avg_sq
    p[rows] -= _direction(exp_avg, exp_avg_sq, state["step"], group)


def _direction(exp_avg: Tensor, exp_avg_sq: Tensor, step: int, group: dict) -> Tensor:
    """lr * m_hat / (sqrt(v_hat) + eps), with Adam's bias corrections for ``step``."""
    beta1, beta2 = group["betas"]
    denom = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(group["eps"])
    return exp_avg.div(denom).mul_(group["lr"] / (1 - beta1**step))
