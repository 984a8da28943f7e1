"""Model fixing and fine-tuning: start the target model from the source-stage model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from translearn.data.facts import DataFacts, require_facts
from translearn.errors import check_finite
from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy


def copy_matching(target: nn.Module, source: nn.Module) -> list[str]:
    """Copy every parameter of ``source`` whose name and shape match one of ``target``; return the names.

    With the shared user index, ``user_encoder.*`` always transfers; so does the head when both models
    have the same architecture. Item towers transfer only for domains both models have.
    """
    src = dict(source.named_parameters())
    copied = []
    with torch.no_grad():
        for name, param in target.named_parameters():
            if name in src and src[name].shape == param.shape:
                param.copy_(src[name])
                copied.append(name)
    return copied


class FineTune(TransferStrategy):
    """Initialise from the source model, then train on the target: ``loss = loss_t + l2sp * R``.

    freeze:               submodule names (e.g. ``[user_encoder]``) kept fixed: model fixing
    l2sp:                 weight of ``R = sum ||w - w_source||^2`` over the transferred parameters
                          (L2-SP: stay close to the source solution instead of to zero)
    transferred_lr_scale: learning-rate multiplier for transferred parameters (e.g. 0.1)
    """

    uses_source_model = True
    user_bridge = "content"  # see translearn.strategies.bridge

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, freeze: Sequence[str] = (), l2sp: float = 0.0,
                 transferred_lr_scale: float = 1.0, facts: DataFacts | None = None, **kwargs: Any) -> None:
        if source_model is None:
            raise ValueError("fine-tuning needs a source_model (the source stage, or strategy.source_ckpt)")
        check_finite(l2sp=l2sp, transferred_lr_scale=transferred_lr_scale)
        if l2sp < 0 or transferred_lr_scale <= 0:
            raise ValueError(f"strategy.l2sp must be >= 0 and strategy.transferred_lr_scale > 0, "
                             f"got {l2sp} and {transferred_lr_scale}")
        frozen_users = [n for n in freeze if n == "user_encoder" or n.startswith("user_encoder.")]
        if frozen_users and not getattr(model, "needs_history", 0):
            # Model fixing of per-user vectors: refused when no target user has source data (their frozen
            # vectors would be the source model's untouched random initialisation). A sequence model's
            # user_encoder reads histories, holds no per-user vector and transfers to unseen users.
            facts = require_facts(facts, "FineTune with a frozen user_encoder",
                                  "it refuses when no target user has source data")
            if not any(facts.shared_users.get(s, 0) for s in source_domains):
                raise ValueError(f"strategy.freeze={list(freeze)} keeps the source model's user vectors fixed, but "
                                 f"the target {target_domain!r} shares 0 users with {list(source_domains)}: every "
                                 "target user would keep a frozen, never-trained vector; drop user_encoder from "
                                 "strategy.freeze or use a strategy that bridges by content")
        super().__init__(model, target_domain, source_domains, facts=facts, **kwargs)
        self.transferred = copy_matching(model, source_model)
        if not self.transferred:
            raise ValueError("no parameter of the source model matches the target model (names and shapes); "
                             "use the same model config and embedding size for the source stage")
        self.l2sp, self.transferred_lr_scale = l2sp, transferred_lr_scale
        params = dict(model.named_parameters())
        for i, name in enumerate(self.transferred):
            self.register_buffer(f"_anchor_{i}", params[name].detach().clone(), persistent=False)
        self.freeze = list(freeze)
        modules = dict(model.named_modules())
        for name in self.freeze:
            if name not in modules or not name:
                options = ", ".join(n for n in modules if n and n.count(".") <= 1 and not n.startswith("head."))
                raise ValueError(f"strategy.freeze: the model has no submodule {name!r}; top-level ones: {options}")
            modules[name].requires_grad_(False)

    def param_groups(self) -> list[dict]:
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        moved = set(self.transferred)
        groups = [{"params": [p for n, p in named if n not in moved]}]
        if self.transferred_lr_scale != 1.0:
            groups.append({"params": [p for n, p in named if n in moved], "lr_scale": self.transferred_lr_scale})
        else:
            groups[0]["params"] += [p for n, p in named if n in moved]
        return [g for g in groups if g["params"]]

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        loss_t = self.domain_loss(self.target_domain, batch[self.target_domain])
        terms = {"loss_t": loss_t}
        loss = loss_t
        if self.l2sp > 0:
            params = dict(self.model.named_parameters())
            reg = sum(((params[n] - getattr(self, f"_anchor_{i}")) ** 2).sum()
                      for i, n in enumerate(self.transferred) if params[n].requires_grad)
            terms["loss_l2sp"] = reg
            loss = loss + self.l2sp * reg
        return {"loss": loss, **terms}
