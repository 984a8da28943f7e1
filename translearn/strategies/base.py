"""``TransferStrategy``: the LightningModule every strategy extends (one level of inheritance).

The base owns the optimiser, evaluation and logging. A strategy implements ``compute_loss(batch)``
returning ``{"loss": ..., "loss_t": ..., ...}``; every entry is logged as ``train/<name>``.
Evaluation ranks the target domain's held-out items (full ranking or sampled candidates, as the data
module provides) and logs ``val/target/<metric>`` and ``test/target/<metric>``; the source domains of
``eval_domains`` are ranked too (full ranking over their items), as ``val/<domain>/<metric>`` and
``test/<domain>/<metric>``.
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
from translearn.losses import BPRLoss
from translearn.metrics import rank_targets, ranking_metrics, rating_metrics
from translearn.metrics.per_user import gather_rows, per_user_means
from translearn.models.encoders import IdEmbedding
from translearn.models.recommender import Query, Recommender
from translearn.strategies.bridge import check_bridge, model_item_tower

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]
STAGES = ("val", "test")
# metric sets: one per stage and protocol; the second protocol (``evaluation.sampled_negatives``) is the
# second dataloader of a stage and logs ``<stage>/target/sampled/<metric>``
METRIC_SETS = {"val": "val/target", "test": "test/target",
               "val_sampled": "val/target/sampled", "test_sampled": "test/target/sampled"}
REPEATS = ("mask", "keep")


def source_tower_missing(model: Recommender, domain: str) -> str | None:
    """Why ``model`` cannot rank the items of ``domain`` for its users, or None when it can (an item tower for
    the domain and, for a model that reads histories, the domain's items in its token table)."""
    if domain not in getattr(model, "item_encoders", {}):
        return f"the model has no item tower for {domain!r} (it has {', '.join(model.domains)})"
    if getattr(model, "needs_history", 0) and domain not in getattr(model, "history_domains", ()):
        return f"the model's histories hold no {domain!r} items (it reads {', '.join(model.history_domains)})"
    return None  # what full ranking does with a held-out item that is also a known item


class TransferStrategy(pl.LightningModule):
    """Shared training/evaluation glue.

    model:          the recommender; must have an item tower for the target (and sources if used)
    target_domain:  domain whose held-out items are evaluated
    source_domains: domains knowledge is transferred from
    optimizer:      ``functools.partial`` of a torch optimiser, called with the parameter groups
    scheduler:      optional partial of a LR scheduler, called with the optimiser
    loss:           BPRLoss / BCELoss / SampledSoftmaxLoss (pos [B], neg [B, N]) or MSELoss (pred, rating)
    ks, metrics:    cut-offs and metric names for evaluation (see ``translearn.metrics``)
    facts:          ``DataFacts.of(prepared)``: facts about the training data that some strategies need
                    (their constructors raise a TypeError without it); with it, a loss that needs ratings
                    is checked against the data when the strategy is built
    repeats:        full ranking, a held-out item the user also has among the known (masked) items:
                    ``mask`` (default) masks it with the rest of the known items, so it ranks last among
                    the candidates (after every unmasked item: a miss at any k below the candidate count,
                    0 for AUC); ``keep`` unmasks it, so it is the only known item among the candidates
    eval_domains:   source domains also evaluated (their held-out rows, ``PreparedData.domain_roles``),
                    after the target's loaders, one dataloader each (``CrossDomainDataModule(eval_domains=)``)
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
        if repeats not in REPEATS:
            raise ValueError(f"evaluation.repeats must be one of {', '.join(REPEATS)}, got {repeats!r}")
        if self.refuses_sequences and getattr(model, "needs_history", 0):
            raise ConfigError(f"strategy {type(self).__name__} does not work with sequence models: "
                             f"{self.refuses_sequences}")
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
        self.ks, self.metric_names = [int(k) for k in ks], list(metrics)
        self.repeats = repeats
        self._scratch: dict[str, Tensor] = {}
        self._needs_ties = "auc" in metrics
        self._train_sums: dict[str, Tensor] = {}
        self._train_rows = 0
        self._test_users: list[Tensor] = []
        self.per_user_test: tuple | None = None  # after a test epoch: (users [U], {metric: [U]})
        self.eval_domains = list(eval_domains)
        for domain in self.eval_domains:
            why = source_tower_missing(model, domain) if domain in self.source_domains else "it is not a source"
            if why:
                raise ValueError(f"eval_domains: cannot evaluate domain {domain!r}: {why}")
        # metric set -> (key prefix, domain); source sets are named by position (a module name has no ".")
        self.metric_sets = {name: (prefix, target_domain) for name, prefix in METRIC_SETS.items()}
        for i, domain in enumerate(self.eval_domains):
            for stage in STAGES:
                self.metric_sets[f"{stage}_source{i}"] = (f"{stage}/{domain}", domain)
        self.eval_metrics = nn.ModuleDict({name: nn.ModuleDict(self._metric_set(ks, metrics))
                                           for name in self.metric_sets})

    def _metric_set(self, ks: Sequence[int], names: Sequence[str]) -> dict:
        out = ranking_metrics(ks, names)
        if getattr(self.loss_fn, "needs_ratings", False):
            out.update(rating_metrics())
        return out

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

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups; a group with ``lr_scale`` gets that multiple of the configured lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def setup(self, stage: str) -> None:
        """Thread count: under CPU DDP the cores are split between the processes (two processes with two
        OpenMP threads each on two cores spin against each other and run many times slower)."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and self.device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, trainer.num_devices)))

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
        pos, neg = self.model.score_pos_neg(domain, part, part["items"], part["negatives"])
        return self.loss_fn(pos, neg)

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
        """Batches are flat dicts of tensors (one level nested for training): move them directly,
        which is much cheaper per step than Lightning's generic collection walk."""
        def move(part: dict) -> dict:
            return {k: v if v.device == device else v.to(device, non_blocking=True) for k, v in part.items()}

        if isinstance(batch, dict) and all(isinstance(v, dict) for v in batch.values()):
            moved: dict[int, dict] = {}  # a part shared by several domains (one interleaved sequence batch) stays one
            return {k: moved.setdefault(id(v), move(v)) for k, v in batch.items()}
        if isinstance(batch, dict) and all(isinstance(v, Tensor) for v in batch.values()):
            return move(batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.param_groups())
        if getattr(optimizer, "sparse_gradients", False):  # e.g. LazyAdam: id tables update only the rows used
            for module in self.modules():
                if isinstance(module, IdEmbedding):
                    module.sparse = True
        for group in optimizer.param_groups:  # a group may ask for a multiple of the configured lr
            group["lr"] *= group.pop("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}

    # ---- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, Tensor], stage: str) -> None:
        """Score the batch's candidates and update the metric set ``stage`` (e.g. ``val``, ``test_sampled``,
        ``test_source0``)."""
        domain = self.metric_sets[stage][1]
        if domain == self.target_domain:
            self.rank_into(self.batch_scores(batch), batch, self.eval_metrics[stage])
        else:  # a source domain: the model's own tower, full ranking
            n_items = self.model.item_encoder(domain).num
            buffer = self._eval_buffer("scores", (len(batch["users"]) * n_items,), batch["users"].device)
            scores = self.model.score_all(domain, batch, out=buffer)
            self.rank_into(scores, batch, self.eval_metrics[stage], domain=domain)
        if stage == "test":
            self._test_users.append(batch["users"].detach().cpu())

    def batch_scores(self, batch: dict[str, Tensor]) -> Tensor:
        """[B, C] sampled-candidate scores, or [B, I] full-ranking scores (in a reused buffer)."""
        users = batch["users"]
        if "candidates" in batch:
            return self.score_candidates(batch, batch["candidates"])
        n_items = self.model.item_encoder(self.target_domain).num
        return self.score_all(batch, out=self._eval_buffer("scores", (len(users) * n_items,), users.device))

    def rank_into(self, scores: Tensor, batch: dict[str, Tensor], metrics: nn.ModuleDict,
                  domain: str | None = None) -> None:
        """Mask known items (full ranking; modifies ``scores``), rank the targets, update ``metrics``
        (``domain``: the evaluated domain, default the target)."""
        targets = batch["targets"]
        if "candidates" in batch:
            target_items = batch["candidates"][:, :1]
        else:
            target_items = targets
            # Known items are masked. A held-out item that is also known (a repeat) gets its score back
            # (repeats="keep") or the lowest finite score (repeats="mask"): it stays counted as a
            # candidate (``n_candidates`` includes it) and ranks after every unmasked item.
            safe = torch.where(targets >= 0, targets, targets[:, :1])  # pads point at the row's first target
            kept = scores.gather(1, safe)
            scores[batch["exclude_rows"], batch["exclude_cols"]] = float("-inf")
            if self.repeats == "mask":
                masked = scores.gather(1, safe)
                kept = torch.where(masked == float("-inf"), torch.finfo(scores.dtype).min, masked)
            scores.scatter_(1, safe, kept)
        ranked = rank_targets(scores, targets, n_candidates=batch.get("n_candidates"),
                              workspace=self._eval_buffer("ranking", (scores.numel(),), scores.device),
                              count_ties=self._needs_ties)
        for name, metric in metrics.items():
            if name in ("mae", "rmse"):
                mask = (target_items >= 0) & ~torch.isnan(batch["ratings"])
                items = target_items.clamp(min=0)
                pred = self.score_candidates(batch, items) if domain in (None, self.target_domain) \
                    else self.model.score(domain, batch, items)
                metric.update(pred[mask], batch["ratings"][mask])
            else:
                metric.update(ranked)

    def _eval_buffer(self, name: str, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """A float32 scratch tensor reused across evaluation batches (freed at the end of the epoch):
        a fresh 30 MB score matrix per batch costs more in page faults than the ranking itself."""
        numel = 1
        for n in shape:
            numel *= n
        buf = self._scratch.get(name)
        if buf is None or buf.numel() < numel or buf.device != device:
            buf = self._scratch[name] = torch.empty(numel, device=device)
        return buf[:numel].view(shape)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate_batch(batch, self._loader_sets("val")[dataloader_idx])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate_batch(batch, self._loader_sets("test")[dataloader_idx])

    def _loader_sets(self, stage: str) -> list[str]:
        """The metric set of each of the stage's dataloaders, in the data module's order: the primary
        protocol, the sampled one (``evaluation.sampled_negatives``) if there, then each ``eval_domains``."""
        if self._trainer is None:  # evaluated by hand, outside a trainer: the primary protocol
            return [stage]
        loaders = len(self.trainer.num_val_batches if stage == "val" else self.trainer.num_test_batches)
        sampled = loaders - 1 - len(self.eval_domains)
        if sampled not in (0, 1):
            raise RuntimeError(f"{stage}: {loaders} dataloaders, but the strategy expects 1 (+1 sampled) + "
                               f"{len(self.eval_domains)} (eval_domains {self.eval_domains})")
        return [stage, *([f"{stage}_sampled"] if sampled else []),
                *(f"{stage}_source{i}" for i in range(len(self.eval_domains)))]

    def _log_stage(self, stage: str) -> None:
        """Log every metric set the stage's dataloaders filled (the same sets on every rank)."""
        self._scratch.clear()
        for name in self._loader_sets(stage):
            self._log_metric_set(name)

    def _log_metric_set(self, name: str) -> None:
        for metric_name, metric in self.eval_metrics[name].items():
            self.log(f"{self.metric_sets[name][0]}/{metric_name}", metric.compute(), sync_dist=True,
                     add_dataloader_idx=False)
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_stage("val")

    def on_test_epoch_start(self) -> None:
        self._test_users: list[Tensor] = []
        for metric in self.eval_metrics["test"].values():
            if hasattr(metric, "rows"):
                metric.rows = []

    def on_test_epoch_end(self) -> None:
        self._collect_per_user()
        self._log_stage("test")

    def _collect_per_user(self) -> None:
        """``self.per_user_test``: the test rows' users [N] and each ranking metric's row values [N], gathered
        from every process (see ``translearn.metrics.per_user``)."""
        world = self.trainer.world_size if self._trainer is not None else 1
        users = gather_rows(self._test_users, self.all_gather, world).long().numpy()
        values = {}
        for name, metric in self.eval_metrics["test"].items():
            if getattr(metric, "rows", None) is not None:
                values[name] = gather_rows(metric.rows, self.all_gather, world).double().numpy()
                metric.rows = None
        self.per_user_test = per_user_means(users, values)
