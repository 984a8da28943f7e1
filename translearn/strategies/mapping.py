"""Cold-start mapping (EMCDR style): learn source user vector -> target user vector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from translearn.data.facts import DataFacts, require_facts
from translearn.errors import check_finite
from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy
from translearn.strategies.cold_start import mark_own_vectors, overlap_users, wrap_user_encoder


def make_mapper(in_dim: int, out_dim: int, kind: str = "mlp", hidden_dim: int | None = None) -> nn.Module:
    """``linear``: W x + b. ``mlp``: Linear -> tanh -> Linear (EMCDR's MLP mapping)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        hidden = hidden_dim or 2 * out_dim
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))
    raise ValueError(f"strategy.mapper must be 'linear' or 'mlp', got {kind!r}")


class Mapping(TransferStrategy):
    """``loss = loss_t + beta * loss_map`` with ``loss_map = mean ||f(u_source) - u_target||^2`` over users
    that have both source data and target training data (target vectors detached, so the mapping
    follows the target model and does not bend it). Users with no target training data are scored with
    ``f(u_source)``: evaluate it with ``data.split=cold_start``."""

    uses_source_model = True
    user_bridge = "users"  # see translearn.strategies.bridge
    refuses_sequences = ("it maps one static source vector per user to the target, and a "
                         "sequence model has none (use joint, finetune or fusion)")

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, mapper: str = "mlp", hidden_dim: int | None = None,
                 beta: float = 1.0, map_batch_size: int = 1024, facts: DataFacts | None = None,
                 **kwargs: Any) -> None:
        facts = require_facts(facts, "Mapping", "it maps only users with source data onto target users")
        check_finite(beta=beta)
        if beta < 0 or map_batch_size < 1:
            raise ValueError(f"strategy.beta must be >= 0 and strategy.map_batch_size >= 1, got {beta}, "
                             f"{map_batch_size}")
        wrap_user_encoder(model, source_model, "mapping", lambda f, d: make_mapper(f, d, mapper, hidden_dim))
        super().__init__(model, target_domain, source_domains, facts=facts, **kwargs)
        self.beta, self.map_batch_size = beta, map_batch_size
        self.register_buffer("map_users", torch.zeros(0, dtype=torch.long), persistent=False)
        self.set_users(*overlap_users(facts, target_domain, source_domains, "mapping"))

    def set_users(self, has_target_train: np.ndarray, has_source: np.ndarray) -> None:
        """Which users own a target vector, and which of them train the mapping ([U] bool arrays)."""
        encoder = self.model.user_encoder
        mark_own_vectors(encoder, has_target_train)
        self.map_users = torch.from_numpy(np.flatnonzero(has_target_train & has_source)).to(encoder.has_own.device)

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        loss_t = self.domain_loss(self.target_domain, batch[self.target_domain])
        if len(self.map_users) == 0:
            raise RuntimeError("Mapping has no users to map (set_users was given none)")
        pick = torch.randint(0, len(self.map_users), (self.map_batch_size,), device=self.map_users.device)
        users = self.map_users[pick]
        encoder = self.model.user_encoder
        loss_map = F.mse_loss(encoder.mapped(users), encoder.own(users).detach())
        return {"loss": loss_t + self.beta * loss_map, "loss_t": loss_t, "loss_map": loss_map}
