"""``TransferStrategy``: the LightningModule every strategy extends (one level of inheritance).

The base owns the optimiser and logging. A strategy implements ``compute_loss(batch)`` returning
``{"loss": ..., "loss_t": ..., ...}``; every entry is logged as ``train/<name>``. Evaluation is the
``Evaluator``'s (``translearn.evaluation``, ``self.evaluator``): the validation and test steps hand each
batch to it with the data module's named loader it came from, and the stage ends by logging its
``val/target/<metric>``, ``test/target/sampled/<metric>``, ``test/<source>/<metric>`` keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from translearn.data.facts import DataFacts
from translearn.distributed import ranks_where
from translearn.errors import ConfigError, DivergedError
from translearn.evaluation.device import move_batch
from translearn.evaluation.engine import Evaluator
from translearn.evaluation.loaders import EvalLoader, trainer_loaders
from translearn.evaluation.scoring import source_tower_missing
from translearn.losses import BPRLoss
from translearn.models.encoders import IdEmbedding
from translearn.models.recommender import ItemScorer, Query, Recommender
from translearn.strategies.bridge import check_bridge, model_item_tower

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
__all__ = ["TransferStrategy", "source_tower_missing"]


class TransferStrategy(pl.LightningModule):
    """Shared training/evaluation glue.

    model:          the recommender; must have an item tower for the target (and sources if used)
    target_domain:  domain whose held-out items are evaluated
    source_domains: domains knowledge is transferred from
    optimizer:      ``functools.partial`` of a torch optimiser, called with the parameter groups
    scheduler:      optional partial of a LR scheduler, called with the optimiser
    loss:           BPRLoss / BCELoss / SampledSoftmaxLoss (pos [B], neg [B, N]) or MSELoss (pred, rating)
    facts:          ``DataFacts.of(prepared)``: facts about the training data that some strategies need
                    (their constructors raise a TypeError without it); with it, a loss that needs ratings
                    is checked against the data when the strategy is built
    ks, metrics, repeats: evaluation cut-offs, metric names and the rule for a held-out item that is also a
                    known item (``translearn.evaluation.Evaluator``, ``self.evaluator``)
    eval_domains:   source domains also evaluated (their held-out rows, ``PreparedData.domain_roles``),
                    one named loader each (``CrossDomainDataModule(eval_domains=)``)
    """

    uses_sources: ClassVar[bool] = False  # whether training batches include the source domains
    uses_source_model: ClassVar[bool] = False  # whether it starts from a source-stage model (``source_model``)
    # why the strategy cannot work with a model that reads histories (None: it can)
    refuses_sequences: ClassVar[str | None] = None
    # what a divergence message calls this training ("the source stage" for a stage model)
    training_name: ClassVar[str] = "training"
    # what stands in for shared users when the domains share none (``strategies.bridge``): none | content | users
    user_bridge: ClassVar[str] = "none"

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 optimizer: OptimizerFactory | None = None, scheduler: Callable | None = None,
                 loss: nn.Module | None = None, ks: Sequence[int] = (10, 20),
                 metrics: Sequence[str] = ("hr", "ndcg", "mrr", "recall", "precision"),
                 repeats: str = "mask", facts: DataFacts | None = None, eval_domains: Sequence[str] = ()) -> None:
        if self.refuses_sequences and getattr(model, "needs_history", 0):
            raise ConfigError(f"strategy {type(self).__name__} does not work with sequence models: "
                             f"{self.refuses_sequences}")
        why = self.refuses_model(model)
        if why:
            raise ConfigError(f"strategy {type(self).__name__}: {why}")
        super().__init__()
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler", "loss", "source_model", "facts"])
        self.model = model
        self.target_domain = target_domain
        self.source_domains = list(source_domains)
        self.optimizer_factory = optimizer or (lambda params: torch.optim.Adam(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.loss_fn = loss if loss is not None else BPRLoss()
        for d in self.train_domains:
            model.item_encoder(d)  # fails early, naming the domains the model has
        self.facts = facts
        if facts is not None and self.user_bridge != "none":  # the rule build_strategy applies from the config
            check_bridge(type(self).__name__, self.user_bridge, facts, model_item_tower(model, target_domain),
                         bool(getattr(model, "needs_history", 0)))
        if facts is not None and getattr(self.loss_fn, "needs_ratings", False):
            for domain in self.train_domains:
                if not facts.has_ratings.get(domain, False):
                    raise self._no_ratings(domain)
        if hasattr(model, "score_paired") and (getattr(self.loss_fn, "needs_all_logits", False)
                                               or getattr(self.loss_fn, "needs_ratings", False)):
            raise ConfigError(f"config key 'loss': {type(model).__name__} scores sampled (positive, negative) "
                              f"pairs of paired batches, not {type(self.loss_fn).__name__}; use loss=bce (its "
                              "paper's log loss) or loss=bpr", config_key="loss")
        self.repeats = repeats
        self._train_sums: dict[str, Tensor] = {}
        self._train_rows = 0
        self.per_user_test: tuple | None = None  # after a test epoch: (users [U], {metric: [U]})
        self.eval_domains = list(eval_domains)
        for domain in self.eval_domains:
            why = source_tower_missing(model, domain) if domain in self.source_domains else "it is not a source"
            if why:
                raise ValueError(f"eval_domains: cannot evaluate domain {domain!r}: {why}")
        self.evaluator = Evaluator(target_domain, ks, metrics, repeats,
                                   ratings=getattr(self.loss_fn, "needs_ratings", False), sources=self.eval_domains)

    @classmethod
    def refuses_model(cls, model: nn.Module) -> str | None:
        """Why this strategy cannot train ``model`` (one line, read from what the model declares it reads,
        ``Recommender.reads``), or None. Sequence models: ``refuses_sequences``, checked on its own."""
        reads = getattr(model, "reads", frozenset())
        if cls.uses_source_model and reads & {"graph", "paired"}:
            what = "the training graph" if "graph" in reads else "paired batches"
            return (f"{cls.__name__} starts from a source-stage model, and the source stage does not build "
                    f"models that read {what} ({type(model).__name__}); use strategy=target_only or strategy=joint")
        if "sources" in reads and not cls.uses_sources:
            return (f"{cls.__name__} trains on the target domain alone, and {type(model).__name__} propagates over "
                    "the target's and the source's graphs together and trains on both; use strategy=joint")
        if "paired" in reads and not cls.uses_sources:
            return (f"{cls.__name__} trains on one domain, and {type(model).__name__} trains on paired batches of "
                    "shared users across domains; use strategy=joint")
        return None

    # ---- what subclasses provide ----------------------------------------------------------------
    @property
    def train_domains(self) -> list[str]:
        """Domains in each training batch (the one with the most training rows sets the epoch length)."""
        return [self.target_domain, *self.source_domains] if self.uses_sources else [self.target_domain]

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        raise NotImplementedError

    def score_all(self, query: Query, out: Tensor | None = None) -> Tensor:
        """Query of B rows (an evaluation batch, or users [B]) -> [B, num_target_items] scores for full-ranking
        evaluation (``out``: scratch memory)."""
        return self.model.score_all(self.target_domain, query, out=out)

    def score_candidates(self, query: Query, items: Tensor) -> Tensor:
        """Query of B rows, [B, C] items -> [B, C] scores used for sampled evaluation."""
        return self.model.score(self.target_domain, query, items)

    def item_scorer(self, query: Query) -> ItemScorer | None:
        """``score(items, out=None)`` -> [B, K], the ``score_all`` scores of a subset of the target's items
        (full ranking over item chunks); None when this strategy scores only whole rows (a subclass that
        overrides ``score_all`` and not this: its rows are ranked whole, unbounded by evaluation.max_scores)."""
        if type(self).score_all is not TransferStrategy.score_all:
            return None
        return self.model.item_scorer(self.target_domain, query)

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups; a group with ``lr_scale`` gets that multiple of the configured lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def setup(self, stage: str) -> None:
        """Thread count: under CPU DDP the cores are split between the processes (two processes with two
        OpenMP threads each on two cores spin against each other and run many times slower)."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and self.device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, trainer.num_devices)))
        # Before DDP wraps the model (Lightning builds the optimiser after): DDP reads each embedding's
        # ``sparse`` once, when it is built, to reduce sparse gradients as sparse tensors.
        if getattr(getattr(self.optimizer_factory, "func", self.optimizer_factory), "sparse_gradients", False):
            self._sparse_id_gradients()
        # DDP broadcasts every buffer from rank 0 and cannot broadcast sparse ones (a graph model's adjacency):
        # each rank builds those from the same training data, so DDP leaves them alone.
        sparse = [name for name, buffer in self.named_buffers() if buffer.is_sparse]
        if sparse:
            self._ddp_params_and_buffers_to_ignore = sparse

    def _sparse_id_gradients(self) -> None:
        """Switch the id embeddings to sparse gradients (an optimiser that updates only the rows used)."""
        for module in self.modules():
            if isinstance(module, IdEmbedding):
                module.sparse = True

    def _no_ratings(self, domain: str) -> ConfigError:
        return ConfigError(f"the loss {type(self.loss_fn).__name__} needs explicit ratings, but domain {domain!r} "
                           "has none; use loss=bpr (or bce, softmax) for implicit data", config_key="loss")

    # ---- shared pieces --------------------------------------------------------------------------
    def domain_loss(self, domain: str, part: dict[str, Tensor]) -> Tensor:
        """The configured loss of the model on one domain's part of the batch (a sequence batch for
        models that read histories: every labelled position of ``domain`` at once)."""
        if "labels" in part:
            return self._sequence_loss(domain, part)
        if getattr(self.loss_fn, "needs_all_logits", False):  # full softmax over the domain's items
            return self.loss_fn(self.model.score_all(domain, part), part["items"])
        if getattr(self.loss_fn, "needs_ratings", False):
            if "ratings" not in part:
                raise self._no_ratings(domain)
            return self.loss_fn(self.model.score(domain, part, part["items"]), part["ratings"])
        if "negatives" not in part:
            raise ValueError(f"the loss {type(self.loss_fn).__name__} needs sampled negatives; "
                             "set data.num_negatives >= 1")
        return self._pair_loss(domain, part, *self.model.score_pos_neg(domain, part, part["items"],
                                                                       part["negatives"]))

    def _pair_loss(self, domain: str, part: dict[str, Tensor], pos: Tensor, neg: Tensor) -> Tensor:
        """The loss of positives [B] against negatives [B, N], plus the model's own penalty on ``part``."""
        penalty = self.model.regularization(domain, part) if hasattr(self.model, "regularization") else None
        return self.loss_fn(pos, neg) if penalty is None else self.loss_fn(pos, neg) + penalty

    def domain_losses(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        """{domain: loss} over ``train_domains``. A model that scores a paired batch as a whole
        (``score_paired``: CoNet's cross-connected towers need row b of every domain at once) is called once
        for all domains; any other model gets ``domain_loss`` per domain."""
        score_paired = getattr(self.model, "score_paired", None)
        if score_paired is None:
            return {d: self.domain_loss(d, batch[d]) for d in self.train_domains}
        scores = score_paired({d: batch[d] for d in self.train_domains})
        return {d: self._pair_loss(d, batch[d], *scores[d]) for d in self.train_domains}

    def _sequence_loss(self, domain: str, part: dict[str, Tensor]) -> Tensor:
        """Next-item loss at every position whose label is an item of ``domain``: full softmax (loss=ce)
        or the (pos, neg) losses with the batch's sampled negatives."""
        if getattr(self.loss_fn, "needs_ratings", False):
            raise ValueError(f"the loss {type(self.loss_fn).__name__} predicts ratings; sequence models train "
                             "on next items (loss=ce, bpr, bce or softmax)")
        h, labels = self.model.labelled(domain, part)  # [N, D], [N]
        items = self.model.item_encoder(domain)
        if getattr(self.loss_fn, "needs_all_logits", False):
            return self.loss_fn(h @ items.all().T, labels)
        if "negatives" not in part:
            raise ValueError(f"the loss {type(self.loss_fn).__name__} needs sampled negatives; "
                             "set data.num_negatives >= 1")
        keep = (part["labels"] >= 0) & (part["label_domain"] == self.model.history_domains.index(domain))
        neg = part["negatives"][keep]  # [N, K]
        scores = self.model.head.score(h, items(torch.cat([labels.unsqueeze(1), neg], dim=1)))
        return self.loss_fn(scores[:, 0], scores[:, 1:])

    def training_step(self, batch: dict[str, dict[str, Tensor]], batch_idx: int) -> Tensor:
        terms = self.compute_loss(batch)
        release = getattr(self.model, "release", None)
        if release is not None:
            release()  # a sequence model's cached forward of this batch
        size = sum(len(part["users"]) for part in {id(p): p for p in batch.values()}.values())
        # Epoch means are accumulated here and logged once per epoch: Lightning's per-step logging
        # machinery costs about as much as an MF training step itself.
        for name, value in terms.items():
            self._train_sums[name] = self._train_sums.get(name, 0.0) + value.detach() * size
        self._train_rows += size
        every = self._trainer.log_every_n_steps if self._trainer is not None else 0
        self._check_finite(terms, batch_idx, every)
        # Lightning writes step logs when (step + 1) is a multiple of log_every_n_steps: log only then.
        if every and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", terms["loss"].detach(), on_step=True, on_epoch=False, batch_size=size)
        return terms["loss"]

    def _check_finite(self, terms: dict[str, Tensor], batch_idx: int, every: int) -> None:
        """Raise ``DivergedError`` on a non-finite loss. On CPU every step, before the optimiser step;
        on an accelerator, where the check waits for the device, from the epoch's running sums every
        ``log_every_n_steps`` steps and at the epoch's last step. Either way the run stops inside the
        diverged epoch, so that epoch is never validated or checkpointed. Under DDP the ranks agree on the
        check (one small all-reduce), so a NaN on one rank stops every rank with the same error."""
        if self.device.type == "cpu":
            values, where = terms, f"step {batch_idx}"
        else:
            n_batches = self._trainer.num_training_batches if self._trainer is not None else 0
            if not (batch_idx + 1 == n_batches or (every and (batch_idx + 1) % every == 0)):
                return
            values, where = self._train_sums, f"by step {batch_idx}"
        finite = bool(torch.isfinite(values["loss"]))
        diverged = ranks_where(not finite, self.device)  # agreed by every rank: one rank's NaN stops them all
        if not diverged:
            return
        if finite:  # another rank diverged; stopping here too keeps this rank from waiting on it for ever
            raise DivergedError(f"{self.training_name} diverged at epoch {self.current_epoch}, {where}: non-finite "
                                f"loss on rank {', '.join(map(str, diverged))}; lower optimizer.lr or check the "
                                "strategy's weights")
        bad = [n for n, v in values.items() if n != "loss" and not torch.isfinite(v).all()] or ["loss"]
        shown = ", ".join(f"{n}={float(terms[n].detach()):g}" for n in bad)
        several = self._trainer is not None and self._trainer.world_size > 1
        on = f" on rank {', '.join(map(str, diverged))}" if several else ""
        raise DivergedError(f"{self.training_name} diverged at epoch {self.current_epoch}, {where}{on}: non-finite "
                            f"{shown}; lower optimizer.lr or check the strategy's weights")

    def on_train_epoch_start(self) -> None:
        self._train_sums, self._train_rows = {}, 0

    def on_train_epoch_end(self) -> None:
        for name, total in self._train_sums.items():
            self.log(f"train/{name}", total / max(self._train_rows, 1), sync_dist=True)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches are flat dicts of tensors (one level nested for training): moved directly (``move_batch``),
        which is much cheaper per step than Lightning's generic collection walk."""
        moved = move_batch(batch, device)
        return moved if moved is not None else super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.param_groups())
        if getattr(optimizer, "sparse_gradients", False):  # e.g. LazyAdam: id tables update only the rows used
            self._sparse_id_gradients()
        for group in optimizer.param_groups:  # a group may ask for a multiple of the configured lr
            group["lr"] *= group.pop("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}

    # ---- evaluation: the Evaluator's ----------------------------------------------------------
    def evaluate_batch(self, batch: dict[str, Tensor], stage: str, loader: EvalLoader | None = None) -> None:
        """Rank one evaluation batch of ``loader`` (None: the target, primary protocol) into the metric set of
        ``stage`` (``val`` / ``test``)."""
        self.evaluator.update(self, batch, stage, loader)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate_batch(batch, "val", self.evaluator.loader("val", dataloader_idx))

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate_batch(batch, "test", self.evaluator.loader("test", dataloader_idx))

    def _begin(self, stage: str) -> None:
        """Name the stage's dataloaders (the data module's ``eval_loaders``) for the evaluator."""
        self.evaluator.begin(stage, trainer_loaders(self.trainer, stage, self.evaluator.default_loaders))

    def log_results(self, results: dict[str, Tensor]) -> None:
        """Log evaluation results ``{key: value}`` (the same keys on every rank)."""
        for key, value in results.items():
            self.log(key, value, sync_dist=True, add_dataloader_idx=False)

    def on_validation_epoch_start(self) -> None:
        self._begin("val")

    def on_validation_epoch_end(self) -> None:
        self.log_results(self.evaluator.results("val"))

    def on_test_epoch_start(self) -> None:
        self._begin("test")

    def on_test_epoch_end(self) -> None:
        world = self.trainer.world_size if self._trainer is not None else 1
        self.per_user_test = self.evaluator.per_user(self.all_gather, world)  # for translearn-compare
        self.log_results(self.evaluator.results("test"))
