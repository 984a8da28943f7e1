"""Training losses for implicit (pairwise / sampled) and explicit (rating) feedback.

Shapes: B = batch size, N = negatives per positive, I = items of a domain. Every loss returns a scalar (mean
over the batch). Each class declares `needs_ratings` / `needs_negatives` (and `needs_all_logits`: the loss
takes all-item logits and labels, not a `(pos, neg)` pair) so training code can check the data fits the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pos_neg(pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    """Check pos [B] and neg [B, N] (a [B] neg is taken as N = 1); return (pos [B], neg [B, N])."""
    if neg.dim() == 1:
        neg = neg.unsqueeze(1)
    if pos.dim() != 1 or neg.dim() != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"expected pos [B] and neg [B, N], got {tuple(pos.shape)} and {tuple(neg.shape)}")
    return pos, neg


class BPRLoss(nn.Module):
    """Bayesian personalised ranking: mean over b, n of -log sigmoid(pos_b - neg_bn).

    forward(pos [B], neg [B, N]) -> scalar.
    """

    needs_ratings = False
    needs_negatives = True

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        pos, neg = _pos_neg(pos, neg)
        return -F.logsigmoid(pos.unsqueeze(1) - neg).mean()


class BCELoss(nn.Module):
    """Binary cross entropy over all B * (1 + N) logits, label 1 for positives and 0 for negatives.

    loss = [sum_b -log sigmoid(pos_b) + sum_{b,n} -log(1 - sigmoid(neg_bn))] / (B * (1 + N)).
    forward(pos [B], neg [B, N]) -> scalar.
    """

    needs_ratings = False
    needs_negatives = True

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        pos, neg = _pos_neg(pos, neg)
        logits = torch.cat([pos.unsqueeze(1), neg], dim=1)  # [B, 1 + N]
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)


class SampledSoftmaxLoss(nn.Module):
    """Sampled softmax: mean over b of cross-entropy of [pos_b, neg_b1..neg_bN] / temperature, target 0.

    loss_b = -log( exp(pos_b / tau) / (exp(pos_b / tau) + sum_n exp(neg_bn / tau)) ).
    forward(pos [B], neg [B, N]) -> scalar.
    """

    needs_ratings = False
    needs_negatives = True

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, pos: Tensor, neg: Tensor) -> Tensor:
        pos, neg = _pos_neg(pos, neg)
        logits = torch.cat([pos.unsqueeze(1), neg], dim=1) / self.temperature  # [B, 1 + N]
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, labels)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class CrossEntropyLoss(nn.Module):
    """Full softmax cross-entropy over every item of a domain, from all-item logits.

    loss = mean over the labelled rows n of -log( exp(logits_n[y_n]) / sum_i exp(logits_n[i]) ); rows with
    label -1 (padding, or a label of another domain) are left out. No labelled row gives 0 (not NaN).
    forward(logits [..., I], labels [...]) -> scalar, e.g. logits [N, I] and labels [N], or [B, L, I] and [B, L].
    """

    needs_ratings = False
    needs_negatives = False
    needs_all_logits = True

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.dim() != labels.dim() + 1 or logits.shape[:-1] != labels.shape:
            raise ValueError(f"CrossEntropyLoss takes all-item logits [N, I] and labels [N] (-1 = none), got "
                             f"{tuple(logits.shape)} and {tuple(labels.shape)}; loss=ce needs a model trained on "
                             "all-item scores (a sequence model), use loss=bpr, bce or softmax with (pos, neg) scores")
        flat, y = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        keep = y >= 0
        if not keep.any():
            return flat.sum() * 0.0  # keeps the graph (and the device) without a NaN mean over nothing
        return F.cross_entropy(flat[keep], y[keep])


class MSELoss(nn.Module):
    """Mean squared error for rating prediction: mean over b of (pred_b - target_b)^2.

    forward(pred [B], target [B]) -> scalar.
    """

    needs_ratings = True
    needs_negatives = False

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        return F.mse_loss(pred, target.to(pred.dtype))


class AutoLoss(nn.Module):
    """``loss=auto`` (the default): a placeholder the builder replaces with the model's preferred loss
    (``preferred_loss``); it cannot be called itself."""

    needs_ratings = False
    needs_negatives = True

    def forward(self, *args: Tensor) -> Tensor:
        raise RuntimeError("loss=auto is resolved when the strategy is built (translearn.build.build_loss); "
                           "from Python, pass a loss object such as BPRLoss() or CrossEntropyLoss()")


def preferred_loss(model: nn.Module) -> nn.Module:
    """The loss a model trains best with by default: ``model.preferred_loss`` (``"ce"``: full softmax, as
    sequence models use; ``"bce"``: the log loss over sampled negatives, as CoNet and DTCDR use), else BPR
    (id models)."""
    name = getattr(model, "preferred_loss", "bpr")
    return CrossEntropyLoss() if name == "ce" else BCELoss() if name == "bce" else BPRLoss()


def negatives_to_sample(num_negatives: int, model: nn.Module, loss: nn.Module) -> int:
    """Negatives per training row the data should draw: none for a sequence model whose loss needs none
    (full softmax scores every item), else ``num_negatives`` (id models keep their sampler as configured)."""
    if getattr(model, "needs_history", 0) and not getattr(loss, "needs_negatives", True):
        return 0
    return num_negatives
