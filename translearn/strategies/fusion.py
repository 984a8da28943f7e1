"""Fusion: mix a source-derived scorer with the target model, the weight tuned on validation only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from translearn.evaluation.loaders import TARGET, EvalLoader
from translearn.models.recommender import Query, Recommender
from translearn.strategies.base import TransferStrategy


def standardise(scores: Tensor) -> Tensor:
    """Per-row z-scores [B, C] -> [B, C], so two scorers' scales are comparable."""
    return (scores - scores.mean(1, keepdim=True)) / (scores.std(1, keepdim=True) + 1e-8)


class Fusion(TransferStrategy):
    """``score = (1 - w) * z(target model) + w * z(source scorer)``, z = per-user standardisation.

    The target model trains on the target alone (``loss = loss_t``); the source scorer (``source_model``,
    by default a joint model trained on sources + target training rows) is frozen. Every validation
    epoch evaluates each ``w`` in ``weights`` and keeps the one with the best ``select_metric`` (ties go
    to the smaller w); that w is saved in checkpoints and used for testing. ``w = 0`` is target only and
    ``w = 1`` the source scorer alone; both are logged as ``val/fusion/<metric>_w<w>`` so negative
    transfer stays visible.
    """

    uses_source_model = True
    user_bridge = "content"  # see translearn.strategies.bridge

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None,
                 weights: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                 select_metric: str = "ndcg@10", **kwargs: Any) -> None:
        if source_model is None:
            raise ValueError("fusion needs a source scorer (source_model: the stage model or strategy.source_ckpt)")
        if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
            raise ValueError(f"strategy.weights must be values in [0, 1], got {list(weights)}")
        super().__init__(model, target_domain, source_domains, **kwargs)
        if select_metric not in self.evaluator.metrics("val"):
            raise ValueError(f"strategy.select_metric {select_metric!r} is not evaluated; "
                             f"choose from {', '.join(self.evaluator.metrics('val'))}")
        source_model.item_encoder(target_domain)  # the source scorer must score target items
        self.source_scorer = source_model.requires_grad_(False).eval()
        self.weights = sorted(float(w) for w in weights)
        self.select_metric = select_metric
        self.register_buffer("weight", torch.tensor(0.0))  # the chosen w, saved with checkpoints
        self.grid_metrics = nn.ModuleList(
            [nn.ModuleDict(self.evaluator.metric_set()) for _ in self.weights])

    @property
    def validation_note(self) -> str:
        """What the run's table and ``metrics.json`` (``evaluation_notes``) say about its validation numbers."""
        return (f"val/target/* is optimistic for Fusion: its weight was chosen among {len(self.weights)} "
                "(strategy.weights) on this same validation split (val/fusion/weight); compare it on test")

    def train(self, mode: bool = True) -> Fusion:
        super().train(mode)
        self.source_scorer.eval()
        return self

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        loss_t = self.domain_loss(self.target_domain, batch[self.target_domain])
        return {"loss": loss_t, "loss_t": loss_t}

    def _pair(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if "candidates" in batch:
            items = batch["candidates"]
            return (self.model.score(self.target_domain, batch, items),
                    self.source_scorer.score(self.target_domain, batch, items))
        return (self.model.score_all(self.target_domain, batch),
                self.source_scorer.score_all(self.target_domain, batch))

    def score_all(self, query: Query, out: Tensor | None = None) -> Tensor:
        return self.fuse(self.model.score_all(self.target_domain, query),
                         self.source_scorer.score_all(self.target_domain, query), float(self.weight))

    def score_candidates(self, query: Query, items: Tensor) -> Tensor:
        return self.fuse(self.model.score(self.target_domain, query, items),
                         self.source_scorer.score(self.target_domain, query, items), float(self.weight))

    @staticmethod
    def fuse(target: Tensor, source: Tensor, w: float) -> Tensor:
        return (1.0 - w) * standardise(target) + w * standardise(source)

    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, Tensor], stage: str, loader: EvalLoader | None = None) -> None:
        if stage != "val" or (loader is not None and loader.name != TARGET):
            return super().evaluate_batch(batch, stage, loader)
        target, source = self._pair(batch)
        z_t, z_s = standardise(target), standardise(source)
        fused = torch.empty_like(z_t)
        for w, metrics in zip(self.weights, self.grid_metrics, strict=True):
            # Rankings ignore a positive scale: rank z_t + w / (1 - w) * z_s (one pass) instead of the mix.
            if w < 1.0:
                torch.add(z_t, z_s, alpha=w / (1.0 - w), out=fused)
            else:
                fused.copy_(z_s)
            self.evaluator.rank_into(self, fused, batch, metrics)

    def on_validation_epoch_end(self) -> None:
        values = [float(m[self.select_metric].compute()) for m in self.grid_metrics]
        best = max(range(len(values)), key=lambda k: (values[k], -k))
        self.weight.fill_(self.weights[best])
        for k, w in enumerate(self.weights):
            if w in (0.0, 1.0) or k == best:
                self.log(f"val/fusion/{self.select_metric}_w{w:g}", values[k], sync_dist=True)
        self.log("val/fusion/weight", self.weights[best], sync_dist=True)
        for name, metric in self.grid_metrics[best].items():
            self.log(f"val/target/{name}", metric.compute(), sync_dist=True)
        for metrics in self.grid_metrics:
            for metric in metrics.values():
                metric.reset()
        # the sampled protocol, at the weight chosen by the previous validation, and the model's own source rankings
        self.log_results(self.evaluator.results("val", skip=(TARGET,)))
