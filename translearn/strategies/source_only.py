"""Source only: train on the source domains alone (the source stage of the transfer strategies)."""

from __future__ import annotations

from torch import Tensor

from translearn.strategies.base import TransferStrategy


class SourceOnly(TransferStrategy):
    """``loss = loss_s``, the sum of the source domains' losses. The model needs no target tower; it is
    used to pretrain user (and shared) representations, not evaluated on the target by itself."""

    @property
    def train_domains(self) -> list[str]:
        return list(self.source_domains)

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        if not self.source_domains:
            raise ValueError("source-only training needs at least one source domain (data.source_domains)")
        loss_s = sum(self.domain_loss(d, batch[d]) for d in self.source_domains)
        return {"loss": loss_s, "loss_s": loss_s}
