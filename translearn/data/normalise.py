"""Rating normalisation fitted on training rows only (the target's valid/test ratings never leak in)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from translearn.data.preprocess import StepReport
from translearn.data.schema import Interactions


@dataclass(frozen=True)
class NormaliseRatings:
    """Rescale ratings with statistics of the training rows of each domain.

    method: ``zscore`` ((r - mean) / std), ``center`` (r - mean) or ``minmax`` ((r - min) / (max - min)).
    per_user: use each user's own training mean/std (users without training rows fall back to the
    domain's statistics).
    """

    method: str = "zscore"
    per_user: bool = False
    after_split = True  # run by prepare() after the split, fitted on training rows

    def __post_init__(self) -> None:
        if self.method not in ("zscore", "center", "minmax"):
            raise ValueError(f"NormaliseRatings.method must be zscore, center or minmax, got {self.method!r}")
        if self.per_user and self.method == "minmax":
            raise ValueError("NormaliseRatings: per_user works with zscore or center, not minmax")

    def apply(self, domain: str, inter: Interactions, train_mask: np.ndarray, num_users: int,
              report: StepReport) -> Interactions:
        """Ratings of every row rescaled with statistics of ``inter``'s rows where ``train_mask``."""
        if inter.ratings is None:
            return inter
        r = inter.ratings.astype(np.float64)
        tr = r[train_mask]
        if len(tr) == 0:
            raise ValueError(f"NormaliseRatings: domain {domain!r} has no training ratings to fit on")
        if self.method == "minmax":
            lo, hi = tr.min(), tr.max()
            scaled = (r - lo) / max(hi - lo, 1e-12)
            report.notes.append(f"{domain}: minmax fitted on {len(tr):,} training rows (min {lo:g}, max {hi:g})")
        else:
            shift = np.full(len(r), tr.mean())
            scale = np.full(len(r), tr.std() if self.method == "zscore" else 1.0)
            if self.per_user:
                users = inter.users[train_mask]
                count = np.bincount(users, minlength=num_users)
                total = np.bincount(users, weights=tr, minlength=num_users)
                sq = np.bincount(users, weights=tr**2, minlength=num_users)
                has = count[inter.users] > 0
                mean_u = total / np.maximum(count, 1)
                shift[has] = mean_u[inter.users][has]
                if self.method == "zscore":
                    var_u = sq / np.maximum(count, 1) - mean_u**2
                    std_u = np.sqrt(np.maximum(var_u, 0))[inter.users]
                    ok = has & (std_u > 1e-6)
                    scale[ok] = std_u[ok]
            scaled = (r - shift) / np.maximum(scale, 1e-12)
            who = "per user" if self.per_user else f"mean {tr.mean():.4g}, std {tr.std():.4g}"
            report.notes.append(f"{domain}: {self.method} fitted on {len(tr):,} training rows ({who})")
        return Interactions(inter.users, inter.items, scaled.astype(np.float32), inter.order)
