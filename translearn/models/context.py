"""``ModelContext``: what a model factory may know of the run's data, in one object.

A factory that names a ``context`` parameter gets one (``translearn.models.factory.call_factory``):

- ``num_users``, ``num_items`` ({domain: count} for the model's domains), ``domains``;
- ``items``: the ``ItemCatalog`` (item text, attributes, image paths; ``translearn.content.catalog``);
- ``graph(domain)``: the domain's **training-only** user-item matrix, a binary ``torch.sparse_coo_tensor``
  [num_users, num_items(domain)] (one entry per distinct training (user, item) pair), built on first use
  and kept; validation and test rows never enter it (they come from ``PreparedData.train``);
- ``shared_users(domains=None)``: sorted user indices with training rows in every one of ``domains``
  (default: all of the context's domains), the map of shared users (users share one index).

Nothing is computed until a model asks for it, so a model that does not read the graph costs nothing. A
model declares what it reads in ``Recommender.reads`` (``"history"``, ``"graph"``, ``"paired"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ModelContext:
    """Sizes, item catalogue and (lazily) training graphs and shared users of the model's domains.

    train_rows: {domain: (users int64 [N], items int64 [N])} the training rows only, or a callable
                ``domain -> (users, items)``; ``ModelContext.of(prepared, ...)`` fills it from
                ``PreparedData.train``.
    """

    num_users: int
    num_items: Mapping[str, int]
    items: Any = None
    train_rows: Any = None
    _graphs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, prepared: Any, domains: Sequence[str], items: Any = None) -> ModelContext:
        """The context of ``prepared`` (a ``PreparedData``) for a model of ``domains``: its training rows only."""
        def rows(domain: str) -> tuple[np.ndarray, np.ndarray]:
            train = prepared.train(domain)
            return train.users, train.items

        return cls(prepared.num_users, {d: prepared.num_items(d) for d in domains}, items, rows)

    @property
    def domains(self) -> list[str]:
        return list(self.num_items)

    def _rows(self, domain: str) -> tuple[np.ndarray, np.ndarray]:
        if domain not in self.num_items:
            raise KeyError(f"the model context has no domain {domain!r}; it has: {', '.join(self.domains)}")
        if self.train_rows is None:
            raise ValueError("this model context was built without training rows (ModelContext.of(prepared, ...) "
                             "gives them)")
        users, items = self.train_rows(domain) if callable(self.train_rows) else self.train_rows[domain]
        return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)

    def graph(self, domain: str) -> torch.Tensor:
        """Binary sparse COO [num_users, num_items(domain)] of the domain's distinct training pairs."""
        if domain not in self._graphs:
            users, items = self._rows(domain)
            n = int(self.num_items[domain])
            keys = np.unique(users * n + items)
            index = torch.from_numpy(np.stack([keys // n, keys % n]))
            self._graphs[domain] = torch.sparse_coo_tensor(index, torch.ones(len(keys)), (self.num_users, n),
                                                           is_coalesced=True, check_invariants=True)
        return self._graphs[domain]

    def shared_users(self, domains: Sequence[str] | None = None) -> np.ndarray:
        """Sorted int64 users with training rows in every domain of ``domains`` (default: the context's)."""
        names = list(domains) if domains is not None else self.domains
        seen = np.ones(self.num_users, dtype=bool)
        for d in names:
            has = np.zeros(self.num_users, dtype=bool)
            has[self._rows(d)[0]] = True
            seen &= has
        return np.flatnonzero(seen).astype(np.int64)
