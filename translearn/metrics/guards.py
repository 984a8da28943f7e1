"""Checks of what evaluation ranks: scores that are no measurement are refused, not ranked.

Called by one line from the evaluation engine (``Evaluator.rank_into``, translearn/evaluation/engine.py) and from
``translearn-recommend``, so every path that ranks a model's scores applies the same rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from translearn.errors import DivergedError


def check_finite_scores(scores: Tensor, domain: str, users: Tensor | None = None, what: str = "evaluation") -> None:
    """Raise ``DivergedError`` when ``scores`` [B, C] holds NaN or +-inf: a model whose scores are not finite
    cannot be ranked (training stops on a non-finite loss the same way). Names the domain, how many scores
    are bad and a user index."""
    bad = ~torch.isfinite(scores)
    if not bool(bad.any()):
        return
    rows = bad.any(dim=1).nonzero()[:, 0]
    user = f" (e.g. user index {int(users[rows[0]])})" if users is not None and len(users) == len(scores) else ""
    nan = int(torch.isnan(scores).sum())
    raise DivergedError(f"{what} of domain {domain!r}: the model gives non-finite scores to {len(rows)} of "
                        f"{len(scores)} users in a batch{user}: {int(bad.sum()) - nan} infinite and {nan} NaN; "
                        "the model diverged or was built with extreme weights (e.g. model.init_std); retrain "
                        "with a lower optimizer.lr or a smaller model.init_std")
