"""Target only: the baseline every transfer result is compared with."""

from __future__ import annotations

from torch import Tensor

from translearn.strategies.base import TransferStrategy


class TargetOnly(TransferStrategy):
    """Train on the target domain alone: ``loss = loss_t``."""

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        loss_t = self.domain_loss(self.target_domain, batch[self.target_domain])
        return {"loss": loss_t, "loss_t": loss_t}
