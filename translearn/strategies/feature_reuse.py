"""Feature reuse: source-side user vectors become frozen inputs of the target model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from translearn.data.facts import DataFacts, require_facts
from translearn.models.recommender import Recommender
from translearn.models.reuse import ReusedFeatureEncoder
from translearn.strategies.base import TransferStrategy


class FeatureReuse(TransferStrategy):
    """Train the target model with ``user vector = combine(frozen source vector, own embedding)``:
    ``loss = loss_t``. The source vectors come from the source-stage model and are never updated;
    users without source data get a zero source vector. ``combine`` is ``concat`` or ``gate``
    (see ``ReusedFeatureEncoder``)."""

    uses_source_model = True
    user_bridge = "users"  # see translearn.strategies.bridge
    refuses_sequences = ("it reuses one static source vector per user, and a sequence model has "
                         "none (use joint, finetune or fusion)")

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, combine: str = "concat", facts: DataFacts | None = None,
                 **kwargs: Any) -> None:
        facts = require_facts(facts, "FeatureReuse", "users without source data get a zero source vector")
        if source_model is None:
            raise ValueError("feature reuse needs a source_model (the source stage, or strategy.source_ckpt)")
        if not (hasattr(model.user_encoder, "num") and hasattr(model.user_encoder, "dim")):
            raise ValueError("feature reuse wraps an id-embedding user encoder (model=mf or model=ncf)")
        with torch.no_grad():
            frozen = source_model.user_vectors(torch.arange(model.user_encoder.num))
        seen = facts.users_with_training_data(list(source_domains))
        if len(seen) != len(frozen):
            raise ValueError(f"facts cover {len(seen)} users, the model has {len(frozen)}")
        frozen[torch.from_numpy(~seen)] = 0.0  # users without source data: a zero source vector
        model.user_encoder = ReusedFeatureEncoder(frozen, model.user_encoder, combine)
        super().__init__(model, target_domain, source_domains, facts=facts, **kwargs)
        self.combine = combine

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        loss_t = self.domain_loss(self.target_domain, batch[self.target_domain])
        return {"loss": loss_t, "loss_t": loss_t}
