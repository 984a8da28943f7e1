"""Joint training: one model, one user representation shared by all domains, per-domain item towers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy


class Joint(TransferStrategy):
    """Train on source and target together: ``loss = loss_s + lam * loss_t``.

    ``loss_s`` sums the source domains' losses (each also logged as ``loss_s/<domain>``); ``lam``
    weights the target term and must be >= 0.
    """

    uses_sources = True

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 lam: float = 1.0, **kwargs: Any) -> None:
        if lam < 0:
            raise ValueError(f"strategy.lam must be >= 0 (it weights the target loss), got {lam}")
        if not source_domains:
            raise ValueError("the joint strategy needs at least one source domain (data.source_domains is empty)")
        super().__init__(model, target_domain, source_domains, **kwargs)
        self.lam = lam

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        prepared = getattr(datamodule, "prepared", None)
        if prepared is None:
            return
        for source in self.source_domains:
            if len(prepared.overlap(source)) == 0:
                raise ValueError(f"joint training shares user vectors across domains, but the source {source!r} "
                                 f"and the target {self.target_domain!r} have no users in common; use a strategy "
                                 "that bridges by content, or target_only")

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        per_source = {d: self.domain_loss(d, batch[d]) for d in self.source_domains}
        loss_s = sum(per_source.values())
        loss_t = self.domain_loss(self.target_domain, batch[self.target_domain])
        loss = loss_s + self.lam * loss_t
        terms = {"loss": loss, "loss_s": loss_s, "loss_t": loss_t}
        if len(per_source) > 1:
            terms.update({f"loss_s/{d}": v for d, v in per_source.items()})
        return terms
