"""Vectorised negative sampling: uniform items that are not among a user's known positives."""

from __future__ import annotations

import numpy as np


class NegativeSampler:
    """Draws items uniformly from ``[0, num_items)`` avoiding each user's positive items.

    Membership is tested with a sorted array of ``user * num_items + item`` keys (``np.searchsorted``),
    so a batch is sampled with a few array passes and no per-row Python loop. Collisions are redrawn up
    to ``max_rounds`` times; the few left after that (users who have most items) are drawn exactly from
    each such user's non-positive items, so only a user who has every item can get a positive.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int, max_rounds: int = 20) -> None:
        self.num_items = int(num_items)
        self.keys = np.unique(users.astype(np.int64) * self.num_items + items.astype(np.int64))
        self.max_rounds = max_rounds

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """[...] bool: whether (user, item) is a known positive; users broadcasts against items."""
        keys = users.astype(np.int64) * self.num_items + items
        if len(self.keys) == 0:
            return np.zeros(keys.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """int64 [len(users), n] negatives for each user."""
        neg = rng.integers(0, self.num_items, size=(len(users), n))
        col_users = np.broadcast_to(users[:, None], neg.shape)
        for _ in range(self.max_rounds):
            bad = self.is_positive(col_users, neg)
            if not bad.any():
                return neg
            neg[bad] = rng.integers(0, self.num_items, size=int(bad.sum()))
        bad = self.is_positive(col_users, neg)
        for u in np.unique(col_users[bad]):  # dense users: draw from the items they do not have
            lo, hi = np.searchsorted(self.keys, [u * self.num_items, (u + 1) * self.num_items])
            free = np.setdiff1d(np.arange(self.num_items), self.keys[lo:hi] - u * self.num_items)
            if len(free):
                slots = bad & (col_users == u)
                neg[slots] = rng.choice(free, size=int(slots.sum()))
        return neg
