"""Core data types: interactions, domains and the cross-domain container.

Contract (see docs/concepts.md):
- users share one index space across all domains (``CrossDomainData.user_ids``);
- items are indexed per domain (``Domain.item_ids``);
- a missing raw id is stored as index -1 until a ``DropInvalid`` step removes the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

MISSING = -1  # index of a missing user or item id


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays of one domain's interactions.

    users:   int64 [N] global user index (or MISSING)
    items:   int64 [N] domain-local item index (or MISSING)
    ratings: float32 [N] explicit ratings, or None for implicit feedback
    order:   float64 [N] timestamp or sequence position, or None when the data has no order
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    order: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "ratings", "order"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"Interactions.{name} has {len(arr)} rows, users has {n}")

    def __len__(self) -> int:
        return len(self.users)

    def take(self, index: np.ndarray) -> Interactions:
        """Rows selected by a boolean mask or an integer index array."""
        return Interactions(
            users=self.users[index],
            items=self.items[index],
            ratings=None if self.ratings is None else self.ratings[index],
            order=None if self.order is None else self.order[index],
        )

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        has_r = all(p.ratings is not None for p in parts)
        has_o = all(p.order is not None for p in parts)
        return Interactions(
            users=np.concatenate([p.users for p in parts]),
            items=np.concatenate([p.items for p in parts]),
            ratings=np.concatenate([p.ratings for p in parts]) if has_r else None,
            order=np.concatenate([p.order for p in parts]) if has_o else None,
        )


@dataclass(frozen=True)
class Domain:
    """One domain: its interactions plus per-item raw ids and side information.

    item_ids:        [num_items] raw item ids (int64 or str), sorted
    item_text:       [num_items] str, e.g. titles, or None
    item_attributes: [num_items] str, e.g. category path and brand, or None
    image_paths:     [num_items] str, each item's image file ("" for an item without one), or None
    """

    name: str
    interactions: Interactions
    item_ids: np.ndarray
    item_text: np.ndarray | None = None
    item_attributes: np.ndarray | None = None
    image_paths: np.ndarray | None = None

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def with_interactions(self, interactions: Interactions) -> Domain:
        return replace(self, interactions=interactions)


@dataclass(frozen=True)
class CrossDomainData:
    """Several domains over one shared user index.

    user_ids: [num_users] raw user ids (int64 or str), sorted; user index u is user_ids[u].
    """

    user_ids: np.ndarray
    domains: Mapping[str, Domain] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def domain_names(self) -> list[str]:
        return list(self.domains)

    def domain(self, name: str) -> Domain:
        """The domain called ``name``; a clear error lists the known ones otherwise."""
        if name not in self.domains:
            raise KeyError(f"unknown domain {name!r}; this data has: {', '.join(self.domains)}")
        return self.domains[name]

    def replace_domains(self, domains: Mapping[str, Domain]) -> CrossDomainData:
        return replace(self, domains=dict(domains))

    def users_in(self, name: str) -> np.ndarray:
        """Sorted unique user indices with at least one interaction in domain ``name``."""
        users = self.domain(name).interactions.users
        return np.unique(users[users != MISSING])

    def overlapping_users(self, a: str, b: str) -> np.ndarray:
        """Sorted user indices active in both domains."""
        return np.intersect1d(self.users_in(a), self.users_in(b), assume_unique=True)

    def stats(self) -> dict:
        """Counts per domain and the pairwise user overlap, as plain numbers."""
        out: dict = {"users": self.num_users, "domains": {}}
        for name, dom in self.domains.items():
            inter = dom.interactions
            n_users = len(self.users_in(name))
            n_items = dom.num_items
            out["domains"][name] = {
                "users": n_users,
                "items": n_items,
                "interactions": len(inter),
                "density": round(len(inter) / max(1, n_users * n_items), 8),
                "has_ratings": inter.ratings is not None,
                "has_order": inter.order is not None,
                "has_text": dom.item_text is not None,
                "has_images": dom.image_paths is not None,
            }
        names = list(self.domains)
        out["overlap"] = {
            f"{a}&{b}": len(self.overlapping_users(a, b))
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        }
        return out
