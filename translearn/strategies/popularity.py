"""Most popular: the non-personalised sanity baseline."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from translearn.data.facts import DataFacts, require_facts
from translearn.models.recommender import ItemScorer, Query, query_users
from translearn.strategies.base import TransferStrategy


class Popularity(TransferStrategy):
    """Score every item by its number of training interactions in the target domain, the same for every
    user. Nothing is trained (one pass to count, then it stops); the model is only used for its size.
    A transfer result should beat this as well as ``target_only``; under ``data.split=cold_start`` it is
    the natural floor for users without target history."""

    def __init__(self, *args, facts: DataFacts | None = None, **kwargs) -> None:
        facts = require_facts(facts, "Popularity", "it scores items by their training counts")
        super().__init__(*args, facts=facts, **kwargs)
        self.automatic_optimization = False
        self.register_buffer("counts", torch.zeros(self.model.item_encoder(self.target_domain).num))
        if len(facts.target_item_counts) != len(self.counts):
            raise ValueError(f"facts count {len(facts.target_item_counts)} target items, the model has "
                             f"{len(self.counts)}")
        self.counts.copy_(torch.from_numpy(facts.target_item_counts.astype(np.float32)))

    def set_counts(self, items: np.ndarray) -> None:
        """Count the given training item indices [N] instead (replaces the counts of ``facts``)."""
        counts = np.bincount(items, minlength=len(self.counts)).astype(np.float32)
        self.counts.copy_(torch.from_numpy(counts))

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        return {"loss": torch.zeros((), device=self.counts.device)}

    def training_step(self, batch: dict[str, dict[str, Tensor]], batch_idx: int) -> None:
        return None

    def on_train_epoch_end(self) -> None:
        self.trainer.should_stop = True  # counting needs no second epoch

    def configure_optimizers(self) -> None:
        return None

    def score_all(self, query: Query, out: Tensor | None = None) -> Tensor:
        shape = (len(query_users(query)), len(self.counts))
        scores = torch.empty(shape, device=self.counts.device) if out is None else out.reshape(-1)[
            : shape[0] * shape[1]].view(shape)
        return scores.copy_(self.counts.expand(shape))

    def score_candidates(self, query: Query, items: Tensor) -> Tensor:
        return self.counts[items]

    def item_scorer(self, query: Query) -> ItemScorer:
        rows = len(query_users(query))

        def score(items: slice | Tensor, out: Tensor | None = None) -> Tensor:
            counts = self.counts[items]
            shape = (rows, len(counts))
            scores = torch.empty(shape, device=counts.device) if out is None else out.reshape(-1)[
                : shape[0] * shape[1]].view(shape)
            return scores.copy_(counts.expand(shape))

        return score
