"""Joint training: one model, one user representation shared by all domains, per-domain item towers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from translearn.data.facts import DataFacts, require_facts
from translearn.errors import check_finite
from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy


class Joint(TransferStrategy):
    """Train on source and target together.

    ``weighting='fixed'``:       ``loss = loss_s + lam * loss_t``
    ``weighting='uncertainty'``: ``loss = exp(-s_s) * loss_s + s_s + lam * (exp(-s_t) * loss_t + s_t)`` with
    learned log-variances ``s`` (Kendall et al., 2018), so the balance adapts during training; the
    effective weights ``exp(-s)`` are logged as ``weight_s`` and ``weight_t``.
    ``loss_s`` sums the source domains' losses (each logged as ``loss_s/<domain>`` when there are several).
    """

    uses_sources = True
    user_bridge = "content"  # see translearn.strategies.bridge

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 lam: float = 1.0, weighting: str = "fixed", facts: DataFacts | None = None, **kwargs: Any) -> None:
        check_finite(lam=lam)
        if lam < 0:
            raise ValueError(f"strategy.lam must be >= 0 (it weights the target loss), got {lam}")
        if weighting not in ("fixed", "uncertainty"):
            raise ValueError(f"strategy.weighting must be 'fixed' or 'uncertainty', got {weighting!r}")
        if not source_domains:
            raise ValueError("the joint strategy needs at least one source domain (data.source_domains is empty)")
        # facts: the base refuses domains that share no users unless the model bridges them (strategies.bridge)
        facts = require_facts(facts, "Joint", "it refuses domains that share no users")
        super().__init__(model, target_domain, source_domains, facts=facts, **kwargs)
        self.lam, self.weighting = lam, weighting
        self.log_vars = nn.Parameter(torch.zeros(2)) if weighting == "uncertainty" else None

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        losses = self.domain_losses(batch)
        per_source = {d: losses[d] for d in self.source_domains}
        loss_s = sum(per_source.values())
        loss_t = losses[self.target_domain]
        terms = {"loss_s": loss_s, "loss_t": loss_t}
        if self.log_vars is None:
            loss = loss_s + self.lam * loss_t
        else:
            s_s, s_t = self.log_vars[0], self.log_vars[1]
            loss = torch.exp(-s_s) * loss_s + s_s + self.lam * (torch.exp(-s_t) * loss_t + s_t)
            terms.update(weight_s=torch.exp(-s_s).detach(), weight_t=torch.exp(-s_t).detach())
        if len(per_source) > 1:
            terms.update({f"loss_s/{d}": v for d, v in per_source.items()})
        return {"loss": loss, **terms}
