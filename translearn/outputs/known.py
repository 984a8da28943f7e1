"""Per-user known items of a domain, the items a recommendation list leaves out.

``exclude="all"`` (the default, a deployment reading): every item the user has in the domain's data,
held-out (valid and test) rows included. ``exclude="train"`` (an evaluation-like reading): only the
domain's training rows (the target's TRAIN rows; every row of a source domain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from translearn.data.prepared import PreparedData

EXCLUDE = ("all", "train")


@dataclass(frozen=True)
class KnownItems:
    """Compressed rows: user u's known items are ``items[indptr[u]:indptr[u + 1]]`` (sorted, unique)."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def of(cls, prepared: PreparedData, domain: str, exclude: str = "all") -> KnownItems:
        if exclude not in EXCLUDE:
            raise ValueError(f"--exclude must be one of {', '.join(EXCLUDE)}, got {exclude!r}")
        inter = prepared.data.domain(domain).interactions if exclude == "all" else prepared.train(domain)
        n = prepared.num_items(domain)
        keys = np.unique(inter.users.astype(np.int64) * n + inter.items)
        indptr = np.searchsorted(keys, np.arange(prepared.num_users + 1, dtype=np.int64) * n)
        return cls(indptr.astype(np.int64), (keys % n).astype(np.int64))

    def of_users(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows [E], items [E]) of ``users`` [B]: row b lists user users[b]'s known items."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lens = ends - starts
        rows = np.repeat(np.arange(len(users)), lens)
        flat = np.repeat(starts, lens) + np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        return rows, self.items[flat]
