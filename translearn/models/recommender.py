"""``Recommender``: one user encoder shared by all domains, one item encoder per domain, and a head."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class Recommender(nn.Module):
    """Scores (user, item) pairs of a domain.

    score(domain, users [B], items [B] or [B, N]) -> [B] or [B, N]
    score_pos_neg(domain, users [B], pos [B], neg [B, N]) -> ([B], [B, N])
    score_all(domain, users [B], out=None) -> [B, num_items(domain)]
    """

    def __init__(self, user_encoder: nn.Module, item_encoders: Mapping[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        if not item_encoders:
            raise ValueError("Recommender needs at least one item encoder")
        self.user_encoder = user_encoder
        self.item_encoders = nn.ModuleDict(dict(item_encoders))
        self.head = head

    @property
    def domains(self) -> list[str]:
        return list(self.item_encoders)

    def item_encoder(self, domain: str) -> nn.Module:
        if domain not in self.item_encoders:
            raise KeyError(f"this model has no item tower for domain {domain!r}; it has: {', '.join(self.domains)}")
        return self.item_encoders[domain]

    def user_vectors(self, users: Tensor) -> Tensor:
        return self.user_encoder(users)

    def item_vectors(self, domain: str, items: Tensor | None = None) -> Tensor:
        """[..., D] vectors of ``items``, or [num_items, D] of every item when ``items`` is None."""
        enc = self.item_encoder(domain)
        return enc.all() if items is None else enc(items)

    def score(self, domain: str, users: Tensor, items: Tensor) -> Tensor:
        return self.head.score(self.user_vectors(users), self.item_vectors(domain, items))

    def score_pos_neg(self, domain: str, users: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        """Scores of positives [B] and negatives [B, N]; users are encoded once and items in one lookup
        (one gradient for the item table instead of two)."""
        scores = self.head.score(self.user_vectors(users),
                                 self.item_vectors(domain, torch.cat([pos.unsqueeze(1), neg], dim=1)))
        return scores[:, 0], scores[:, 1:]

    def score_all(self, domain: str, users: Tensor, out: Tensor | None = None) -> Tensor:
        return self.head.score_all(self.user_vectors(users), self.item_vectors(domain), out=out)
