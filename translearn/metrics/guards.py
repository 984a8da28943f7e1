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
    raise non_finite_error(bad.any(dim=1), int(bad.sum()), int(torch.isnan(scores).sum()), domain, users, what)


def non_finite_error(bad_rows: Tensor, n_bad: int, n_nan: int, domain: str, users: Tensor | None = None,
                     what: str = "evaluation") -> DivergedError:
    """The error ``check_finite_scores`` raises, from its counts: ``bad_rows`` bool [B] (rows with a non-finite
    score), ``n_bad`` non-finite scores of which ``n_nan`` NaN (the item-chunked path counts chunk by chunk)."""
    rows = bad_rows.nonzero()[:, 0]
    user = f" (e.g. user index {int(users[rows[0]])})" if users is not None and len(users) == len(bad_rows) else ""
    return DivergedError(f"{what} of domain {domain!r}: the model gives non-finite scores to {len(rows)} of "
                         f"{len(bad_rows)} users in a batch{user}: {n_bad - n_nan} infinite and {n_nan} NaN; "
                         "the model diverged or was built with extreme weights (e.g. model.init_std); retrain "
                         "with a lower optimizer.lr or a smaller model.init_std")
