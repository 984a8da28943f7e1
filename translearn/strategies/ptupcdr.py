"""PTUPCDR (Zhu et al., WSDM 2022): a meta network turns each user's source history into her own bridge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from translearn.data.facts import DataFacts, require_facts
from translearn.errors import ConfigError, check_finite
from translearn.models.meta_bridge import MetaBridge, latest_items
from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy
from translearn.strategies.cold_start import mark_own_vectors, overlap_users, wrap_user_encoder

SCHEDULES = ("sequential", "joint")


class _HeadCall(nn.Module):
    """``head.<method>`` as a forward, so that ``functional_call`` can run it with detached head weights."""

    def __init__(self, head: nn.Module, method: str) -> None:
        super().__init__()
        self.head, self.method = head, method

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        return getattr(self.head, self.method)(u, v)


class PTUPCDR(TransferStrategy):
    """The meta network ``W_u = meta(source history of u)`` (``models.meta_bridge.MetaBridge``) bridges a
    user's source-stage vector ``s_u`` into the target space, ``s_u @ W_u``. Users without target
    training data (cold start) are scored with it; the others with their own vector.

    ``loss_meta`` is the run's loss (BPR, BCE, softmax or MSE) on the batch's target training rows of users
    who also have source data (at most ``meta_batch_size``), scored with the bridged vector against the
    target model's item vectors, the target side detached: the task-oriented loss, not a distance to
    ``t_u``. ``loss_t`` is the target model's own loss.

    ``schedule='sequential'`` (the paper's): epochs ``0 .. target_epochs - 1`` train the target model alone
    (``loss = loss_t``; the meta network gets no gradient), the later epochs the meta network alone
    against the now fixed target model (``loss = loss_meta``; no target weight gets a gradient, so none
    changes). Model selection and early stopping start at the meta phase (``selection_from_epoch``):
    before it the cold users' validation value measures an untrained meta network.
    ``schedule='joint'``: ``loss = loss_t + beta * loss_meta`` from the first step, selection over every epoch."""

    uses_source_model = True
    user_bridge = "users"  # see translearn.strategies.bridge
    refuses_sequences = ("it bridges one static source vector per user to the target, and a sequence model "
                         "has none (use joint, finetune or fusion)")

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, meta_dim: int = 50, max_history: int = 20,
                 history_min_rating: float | None = None, meta_lr: float | None = 0.01, beta: float = 1.0,
                 meta_batch_size: int | None = 256, schedule: str = "sequential", target_epochs: int = 10,
                 facts: DataFacts | None = None, **kwargs: Any) -> None:
        facts = require_facts(facts, "PTUPCDR", "it reads the users' source histories and which users are cold")
        check_finite(beta=beta, **({} if meta_lr is None else {"meta_lr": meta_lr}))
        if beta < 0 or (meta_lr is not None and meta_lr <= 0):
            raise ValueError(f"strategy.beta must be >= 0 and strategy.meta_lr > 0 (or null), got {beta}, {meta_lr}")
        if meta_batch_size is not None and meta_batch_size < 1:
            raise ValueError(f"strategy.meta_batch_size must be >= 1 (or null), got {meta_batch_size}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"config key 'strategy.schedule': expected one of {', '.join(SCHEDULES)}, got "
                              f"{schedule!r}", config_key="strategy.schedule")
        if schedule == "sequential" and target_epochs < 1:
            raise ConfigError(f"config key 'strategy.target_epochs': expected an integer >= 1 (epochs of the target "
                              f"phase), got {target_epochs}", config_key="strategy.target_epochs")
        if len(source_domains) != 1:
            raise ValueError(f"ptupcdr reads one source domain's histories; the data has {len(source_domains)} "
                             f"sources ({', '.join(source_domains)})")
        source = source_domains[0]
        history = torch.from_numpy(source_history(facts, source, max_history, history_min_rating))

        def meta_network(in_dim: int, out_dim: int) -> MetaBridge:
            with torch.no_grad():
                items = source_model.item_vectors(source)  # [I_s, D_s], frozen
            if items.shape[1] != in_dim:
                raise ValueError(f"the source stage's item vectors have {items.shape[1]} dims, its user vectors "
                                 f"{in_dim}; ptupcdr pools item vectors in the user space (model=mf or ncf)")
            return MetaBridge(history, items, out_dim, meta_dim)

        wrap_user_encoder(model, source_model, "ptupcdr", meta_network)
        super().__init__(model, target_domain, source_domains, facts=facts, **kwargs)
        self.beta, self.meta_lr, self.meta_batch_size = beta, meta_lr, meta_batch_size
        self.schedule, self.target_epochs = schedule, target_epochs
        has_target, has_source = overlap_users(facts, target_domain, source_domains, "ptupcdr")
        mark_own_vectors(self.model.user_encoder, has_target)
        self.register_buffer("has_source", torch.from_numpy(has_source), persistent=False)

    @property
    def selection_from_epoch(self) -> int:
        """The first epoch that model selection and early stopping consider (``translearn.callbacks``)."""
        return self.target_epochs if self.schedule == "sequential" else 0

    def in_meta_phase(self) -> bool:
        """Sequential schedule: whether this epoch trains the meta network (else the target model)."""
        return self.current_epoch >= self.target_epochs

    def on_fit_start(self) -> None:
        max_epochs = self.trainer.max_epochs
        if self.schedule == "sequential" and max_epochs is not None and 0 <= max_epochs <= self.target_epochs:
            raise ConfigError(f"config key 'strategy.target_epochs': the target phase takes {self.target_epochs} "
                              f"epochs, but trainer.max_epochs={max_epochs} leaves none to train the meta network; "
                              "lower strategy.target_epochs or raise trainer.max_epochs",
                              config_key="strategy.target_epochs")

    def param_groups(self) -> list[dict]:
        """The meta network at ``meta_lr`` (the paper's 0.01; null: the run's), the rest at the run's."""
        meta = [p for p in self.model.user_encoder.mapper.parameters() if p.requires_grad]
        chosen = {id(p) for p in meta}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in chosen]
        return [{"params": rest}, {"params": meta, **({} if self.meta_lr is None else {"lr": self.meta_lr})}]

    def meta_loss(self, part: dict[str, Tensor]) -> Tensor:
        """The run's loss on the first ``meta_batch_size`` rows of ``part`` (shuffled batches) whose users have
        source data, each user scored with her bridged vector; the item vectors and head weights are
        detached, so only the meta network learns."""
        keep = self.has_source[part["users"]]
        if self.meta_batch_size is not None:
            keep &= torch.cumsum(keep, dim=0) <= self.meta_batch_size
        users = part["users"][keep]
        if len(users) == 0:  # zero, but a graph: the meta phase's loss must still backpropagate
            return sum(p.sum() for p in self.model.user_encoder.mapper.parameters()) * 0.0
        vectors = self.model.user_encoder.mapped(users)  # [B, D]
        head = self.model.head
        frozen = {f"head.{name}": p.detach() for name, p in head.named_parameters()}
        items = self.model.item_encoder(self.target_domain)

        def score(u: Tensor, v: Tensor, method: str = "score") -> Tensor:
            return functional_call(_HeadCall(head, method), frozen, (u, v))

        if getattr(self.loss_fn, "needs_all_logits", False):  # full softmax over the target's items
            return self.loss_fn(score(vectors, items.all().detach(), "score_all"), part["items"][keep])
        if getattr(self.loss_fn, "needs_ratings", False):
            return self.loss_fn(score(vectors, items(part["items"][keep]).detach()), part["ratings"][keep])
        candidates = torch.cat([part["items"][keep].unsqueeze(1), part["negatives"][keep]], dim=1)  # [B, 1 + N]
        scores = score(vectors, items(candidates).detach())
        return self.loss_fn(scores[:, 0], scores[:, 1:])

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        part = batch[self.target_domain]
        if self.schedule == "sequential":
            if self.in_meta_phase():
                loss_meta = self.meta_loss(part)
                return {"loss": loss_meta, "loss_meta": loss_meta}
            loss_t = self.domain_loss(self.target_domain, part)
            return {"loss": loss_t, "loss_t": loss_t}
        loss_t = self.domain_loss(self.target_domain, part)
        loss_meta = self.meta_loss(part)
        return {"loss": loss_t + self.beta * loss_meta, "loss_t": loss_t, "loss_meta": loss_meta}


def source_history(facts: DataFacts, source: str, max_len: int, min_rating: float | None) -> np.ndarray:
    """int64 [U, max_len]: each user's latest source training items (``meta_bridge.latest_items``); with
    ``min_rating``, only rows rated at least that (the paper keeps ratings above 3 of 5)."""
    rows = facts.training_rows(source)
    users, items, order = rows.users, rows.items, rows.order
    if min_rating is not None:
        if rows.ratings is None:
            raise ValueError(f"strategy.history_min_rating={min_rating}, but the source {source!r} has no ratings; "
                             "set it to null")
        keep = rows.ratings >= min_rating
        users, items, order = users[keep], items[keep], None if order is None else order[keep]
    return latest_items(users, items, order, len(facts.trained_users[source]), max_len)
