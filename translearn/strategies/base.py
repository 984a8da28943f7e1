"""``TransferStrategy``: the LightningModule every strategy extends (one level of inheritance).

The base owns the optimiser, evaluation and logging. A strategy implements ``compute_loss(batch)``
returning ``{"loss": ..., "loss_t": ..., ...}``; every entry is logged as ``train/<name>``.
Evaluation ranks the target domain's held-out items (full ranking or sampled candidates, as the data
module provides) and logs ``val/target/<metric>`` and ``test/target/<metric>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from translearn.losses import BPRLoss
from translearn.metrics import rank_targets, ranking_metrics, rating_metrics
from translearn.models.recommender import Recommender

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
STAGES = ("val", "test")


class TransferStrategy(pl.LightningModule):
    """Shared training/evaluation glue.

    model:          the recommender; must have an item tower for the target (and sources if used)
    target_domain:  domain whose held-out items are evaluated
    source_domains: domains knowledge is transferred from
    optimizer:      ``functools.partial`` of a torch optimiser, called with the parameter groups
    scheduler:      optional partial of a LR scheduler, called with the optimiser
    loss:           BPRLoss / BCELoss / SampledSoftmaxLoss (pos [B], neg [B, N]) or MSELoss (pred, rating)
    ks, metrics:    cut-offs and metric names for evaluation (see ``translearn.metrics``)
    """

    uses_sources: ClassVar[bool] = False  # whether training batches include the source domains

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 optimizer: OptimizerFactory | None = None, scheduler: Callable | None = None,
                 loss: nn.Module | None = None, ks: Sequence[int] = (10, 20),
                 metrics: Sequence[str] = ("hr", "ndcg", "mrr", "recall", "precision")) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler", "loss"])
        self.model = model
        self.target_domain = target_domain
        self.source_domains = list(source_domains)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.loss_fn = loss if loss is not None else BPRLoss()
        for d in self.train_domains:
            model.item_encoder(d)  # fails early, naming the domains the model has
        self.eval_metrics = nn.ModuleDict({
            stage: nn.ModuleDict(self._metric_set(ks, metrics))
            for stage in STAGES
        })

    def _metric_set(self, ks: Sequence[int], names: Sequence[str]) -> dict:
        out = ranking_metrics(ks, names)
        if getattr(self.loss_fn, "needs_ratings", False):
            out.update(rating_metrics())
        return out

    # ---- what subclasses provide ----------------------------------------------------------------
    @property
    def train_domains(self) -> list[str]:
        """Domains in each training batch, the anchor (one pass per epoch) first."""
        return [self.target_domain, *self.source_domains] if self.uses_sources else [self.target_domain]

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        raise NotImplementedError

    def score_all(self, users: Tensor) -> Tensor:
        """[B] users -> [B, num_target_items] scores used for full-ranking evaluation."""
        return self.model.score_all(self.target_domain, users)

    def score_candidates(self, users: Tensor, items: Tensor) -> Tensor:
        """[B] users, [B, C] items -> [B, C] scores used for sampled evaluation."""
        return self.model.score(self.target_domain, users, items)

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups; override for per-group learning rates."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    # ---- shared pieces --------------------------------------------------------------------------
    def domain_loss(self, domain: str, part: dict[str, Tensor]) -> Tensor:
        """The configured loss of the model on one domain's part of the batch."""
        if getattr(self.loss_fn, "needs_ratings", False):
            if "ratings" not in part:
                raise ValueError(f"the loss {type(self.loss_fn).__name__} needs explicit ratings, but domain "
                                 f"{domain!r} has none; use loss=bpr (or bce, softmax) for implicit data")
            return self.loss_fn(self.model.score(domain, part["users"], part["items"]), part["ratings"])
        if "negatives" not in part:
            raise ValueError(f"the loss {type(self.loss_fn).__name__} needs sampled negatives; "
                             "set data.num_negatives >= 1")
        pos, neg = self.model.score_pos_neg(domain, part["users"], part["items"], part["negatives"])
        return self.loss_fn(pos, neg)

    def training_step(self, batch: dict[str, dict[str, Tensor]], batch_idx: int) -> Tensor:
        terms = self.compute_loss(batch)
        size = len(batch[self.train_domains[0]]["users"])
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), on_step=False, on_epoch=True, batch_size=size)
        return terms["loss"]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.param_groups())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}

    # ---- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, Tensor], stage: str) -> None:
        users, targets = batch["users"], batch["targets"]
        if "candidates" in batch:
            items = batch["candidates"]
            scores = self.score_candidates(users, items)
            target_items = items[:, :1]
        else:
            scores = self.score_all(users)
            target_items = targets
            # Known items are masked, except a held-out item the user also has in training (a repeat).
            safe = torch.where(targets >= 0, targets, targets[:, :1])  # pads point at the row's first target
            kept = scores.gather(1, safe)
            scores[batch["exclude_rows"], batch["exclude_cols"]] = float("-inf")
            scores.scatter_(1, safe, kept)
        ranked = rank_targets(scores, targets)
        metrics = self.eval_metrics[stage]
        for name, metric in metrics.items():
            if name in ("mae", "rmse"):
                mask = (target_items >= 0) & ~torch.isnan(batch["ratings"])
                pred = self.score_candidates(users, target_items.clamp(min=0))
                metric.update(pred[mask], batch["ratings"][mask])
            else:
                metric.update(ranked)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluate_batch(batch, "test")

    def _log_stage(self, stage: str) -> None:
        for name, metric in self.eval_metrics[stage].items():
            self.log(f"{stage}/target/{name}", metric.compute(), sync_dist=True)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage("test")
