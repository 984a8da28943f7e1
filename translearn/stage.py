"""The source stage: a model trained before the transfer step, selected on validation, cached by content hash.

Fine-tuning, feature reuse and mapping start from a model trained on the source domains; distillation
and fusion use a model that can also score target items (trained on sources + target training data,
i.e. a joint model). ``stage_model`` trains it once and caches it under a key made of the prepared
data's key, the model and training settings and the seed, so a sweep over the transfer step's own knobs
(lambda, alpha, freeze lists, ...) reads the same stage model. Writes are atomic.

Training runs through a Lightning ``Trainer`` on the main run's devices (``trainer=gpu``, DDP, precision)
with early stopping: the stage holds out a validation slice of its own training rows (``views.stage_view``:
each user's last row of the validated domain) and keeps the weights of its best epoch by NDCG@10 there.
The main run's data stays whole. Under DDP every process runs the stage's trainer (the data is sharded,
gradients are averaged: one model, trained once across the processes) and rank 0 writes the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from translearn.cache import content_key, entry_lock, read_entry, write_entry
from translearn.callbacks import EarlyStopping
from translearn.data.datamodule import CrossDomainDataModule
from translearn.data.prepared import PreparedData
from translearn.data.sequence_data import HistorySpec
from translearn.data.views import EmptySliceError
from translearn.errors import ConfigError
from translearn.losses import negatives_to_sample
from translearn.models.factory import call_factory
from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy

log = logging.getLogger(__name__)
# 2: the largest domain sets the epoch of multi-domain stages; 3: Lightning trainer, early stopping on a
# validation slice of the stage's own training rows, best epoch's weights; 4: content towers (MF/NCF text,
# id_text, image) are validated on their current item table (a fused Adam step left a stale one cached)
STAGE_VERSION = 4
MONITOR = "val/target/ndcg@10"
TRAINER_KEYS = ("accelerator", "devices", "strategy", "precision", "num_nodes")  # taken from the main run


@dataclass(frozen=True)
class StageSpec:
    """How the stage model is trained.

    domains:         ``sources`` (source domains only) or ``all`` (sources + target training rows, joint)
    max_epochs:      at most this many passes over the largest stage domain's training rows
    patience:        epochs without a better validation NDCG@10 before the stage stops (the best epoch's
                     weights are kept); None trains ``max_epochs`` on all rows, without a validation slice
    min_steps:       optimiser steps before early stopping may end the stage (experiments/README.md, the
                     defaults study: sparse domains have few steps per epoch)
    validate:        the domain whose slice validates the stage; None: the target under ``all`` (the
                     teacher's job is to score target items), the first source under ``sources``
    batch_size:      training rows (labelled positions for sequence models) per step; None: 2048 for id
                     models, 256 for sequence models (the CLI passes the main run's)
    lam:             target weight when ``domains='all'`` (``loss = loss_s + lam * loss_t``)
    embedding_dim:   the stage model's embedding size, when it differs from the target model's (a larger
                     teacher for distillation); None keeps the model config's
    """

    domains: str = "sources"
    max_epochs: int = 200
    patience: int | None = 20
    min_steps: int = 1000
    validate: str | None = None
    batch_size: int | None = None
    eval_batch_size: int = 512
    num_negatives: int = 1
    lam: float = 1.0
    embedding_dim: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.domains not in ("sources", "all"):
            raise ValueError(f"strategy.stage.domains must be 'sources' or 'all', got {self.domains!r}")
        if not math.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"strategy.stage.lam must be a finite number >= 0, got {self.lam}")
        if self.max_epochs < 1:
            raise ValueError(f"strategy.stage.max_epochs must be >= 1, got {self.max_epochs}")
        if self.min_steps < 0:
            raise ValueError(f"strategy.stage.min_steps must be >= 0, got {self.min_steps}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"strategy.stage.patience must be >= 1 or null, got {self.patience}")
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"strategy.stage.{name} must be >= 1, got {value}")

    def train_domains(self, prepared: PreparedData) -> list[str]:
        if not prepared.sources:
            raise ValueError("this strategy starts from a source-stage model, but data.source_domains is empty")
        return list(prepared.sources) + ([prepared.target] if self.domains == "all" else [])

    def validate_domain(self, prepared: PreparedData) -> str:
        domains = self.train_domains(prepared)
        name = self.validate or (prepared.target if self.domains == "all" else prepared.sources[0])
        if name not in domains:
            raise ValueError(f"strategy.stage.validate={name!r} is not a domain the stage trains on "
                             f"({', '.join(domains)})")
        return name


class StageTask(TransferStrategy):
    """The stage's LightningModule: ``loss = sum_d weight_d * loss_d`` over the stage's domains (a source
    stage: every weight 1; a joint stage: the target's is ``lam``), validated on the view's target."""

    training_name = "source stage"

    def __init__(self, model: Recommender, validate: str, domains: list[str], weights: Mapping[str, float],
                 **kwargs: Any) -> None:
        self.__dict__["_stage_domains"] = list(domains)  # read by train_domains inside the base __init__
        super().__init__(model, validate, [d for d in domains if d != validate], **kwargs)
        self.weights = {d: float(weights.get(d, 1.0)) for d in domains}

    @property
    def train_domains(self) -> list[str]:
        return list(self.__dict__["_stage_domains"])

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        per_domain = {d: self.domain_loss(d, batch[d]) for d in self.train_domains}
        loss = sum(self.weights[d] * v for d, v in per_domain.items())
        return {"loss": loss, **{f"loss/{d}": v for d, v in per_domain.items()}}


class KeepBest(pl.Callback):
    """Remembers the model weights of the best validation epoch (in memory, on CPU), puts them back at
    the end of fit, and records each epoch's training loss and validation value."""

    def __init__(self, monitor: str = MONITOR) -> None:
        self.monitor = monitor
        self.best: float | None = None
        self.best_epoch = -1
        self.state: dict[str, Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self._began = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._began = time.perf_counter()

    @staticmethod
    def _epoch_loss(task: pl.LightningModule) -> float:
        """This epoch's mean training loss so far (this process's rows), from the task's running sums."""
        total = getattr(task, "_train_sums", {}).get("loss")
        return float(total) / max(task._train_rows, 1) if total is not None else float("nan")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.limit_val_batches:  # no validation slice: one line per epoch all the same
            loss = self._epoch_loss(pl_module)
            self.history.append({"epoch": trainer.current_epoch, "train_loss": loss})
            log.info("stage epoch %d/%d loss %.4f %.1fs", trainer.current_epoch + 1, trainer.max_epochs, loss,
                     time.perf_counter() - self._began)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.history.append({"epoch": trainer.current_epoch, "val": value, "train_loss": self._epoch_loss(pl_module)})
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.model.state_dict().items()}
        log.info("stage epoch %d/%d loss %.4f %s %.4f (best %.4f at epoch %d) %.1fs", trainer.current_epoch + 1,
                 trainer.max_epochs, self.history[-1]["train_loss"], self.monitor, value, self.best,
                 self.best_epoch + 1, time.perf_counter() - self._began)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.state is not None:
            pl_module.model.load_state_dict(self.state)


ModelFactory = Callable[..., Recommender]


def build_stage_model(factory: ModelFactory, prepared: PreparedData, spec: StageSpec,
                      items: Any = None) -> Recommender:
    """An untrained stage model with item towers for the stage's domains; ``items``: the ``ItemCatalog``
    (passed to factories that take it, for content item towers)."""
    kwargs = {"embedding_dim": spec.embedding_dim} if spec.embedding_dim else {}
    return call_factory(factory, items, num_users=prepared.num_users,
                        num_items={d: prepared.num_items(d) for d in spec.train_domains(prepared)}, **kwargs)


def load_model_weights(model: Recommender, path: str | Path) -> Recommender:
    """Load a stage ``model.pt`` or a training run's Lightning checkpoint (its ``model.*`` weights).

    Weights the file has beyond the model's (e.g. a joint run's extra item towers) are ignored; weights
    the model needs but the file lacks are an error that lists them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"strategy.source_ckpt: no file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a Lightning checkpoint of a translearn run
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise ValueError(f"strategy.source_ckpt {path} lacks weights the stage model needs: {', '.join(missing)}")
    wrong = [k for k, v in model.state_dict().items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"strategy.source_ckpt {path} has weights of other shapes for: {', '.join(wrong)} "
                         "(set strategy.stage.embedding_dim to the checkpoint's embedding size)")
    model.load_state_dict({k: state[k] for k in model.state_dict()})
    return model


def stage_batch_size(spec: StageSpec, model: Recommender) -> int:
    """``spec.batch_size``, or the default of the model family (2048 rows, 256 sequence positions)."""
    if spec.batch_size is not None:
        return spec.batch_size
    return 256 if HistorySpec.of(model) is not None else 2048


def train_stage(model: Recommender, prepared: PreparedData, spec: StageSpec,
                optimizer: Callable[..., torch.optim.Optimizer], loss: torch.nn.Module,
                trainer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` on the stage's domains through a Lightning ``Trainer`` (``trainer``: its device
    settings, by default one CPU process), early-stopped on the stage's validation slice unless
    ``spec.patience`` is None. Returns what happened: ``{"epochs", "best_epoch", "best_val", "history"}``."""
    domains = spec.train_domains(prepared)
    validated = spec.patience is not None
    validate = spec.validate_domain(prepared)
    try:
        view = prepared.stage_view(domains, validate, spec.seed, hold_out=validated)
    except EmptySliceError as err:  # refused: the stage would train its whole budget unvalidated
        raise ConfigError(f"config key 'strategy.stage.patience': {err}, so the stage cannot be validated; set "
                          "strategy.stage.patience=null to train all strategy.stage.max_epochs epochs without "
                          "validation", config_key="strategy.stage.patience") from None
    weights = {prepared.target: spec.lam} if spec.domains == "all" else {}
    task = StageTask(model, validate, domains, weights, optimizer=optimizer, loss=loss, ks=(10,), metrics=("ndcg",))
    data = CrossDomainDataModule(view, domains, batch_size=stage_batch_size(spec, model),
                                 num_negatives=negatives_to_sample(spec.num_negatives, model, loss),
                                 eval_batch_size=spec.eval_batch_size, seed=spec.seed, history=HistorySpec.of(model))
    best = KeepBest()
    callbacks: list[pl.Callback] = [best]
    if validated:
        callbacks.append(EarlyStopping(MONITOR, patience=spec.patience, mode="max", min_steps=spec.min_steps,
                                       check_on_train_epoch_end=False))
    settings = {k: v for k, v in (trainer or {}).items() if k in TRAINER_KEYS and v is not None}
    runner = pl.Trainer(max_epochs=spec.max_epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False, callbacks=callbacks,
                        limit_val_batches=1.0 if validated else 0, **settings)
    runner.fit(task, datamodule=data)
    model.cpu().eval()
    return {"epochs": runner.current_epoch, "best_epoch": best.best_epoch, "best_val": best.best,
            "history": best.history, "validated_on": validate if validated else None,
            "world_size": runner.world_size, "is_global_zero": runner.is_global_zero}


def stage_model(factory: ModelFactory, prepared: PreparedData, spec: StageSpec,
                optimizer: Callable[..., torch.optim.Optimizer], loss: torch.nn.Module,
                cache_dir: str | Path | None = None, describe: Mapping[str, Any] | None = None,
                checkpoint: str | Path | None = None, trainer: Mapping[str, Any] | None = None,
                items: Any = None) -> Recommender:
    """The stage model: from ``checkpoint`` if given, else from the cache, else trained (and cached).

    ``describe`` holds JSON-able descriptions of the factory, optimiser and loss settings for the cache
    key (the CLI passes the resolved config nodes); without it the model is trained but not cached.
    ``trainer``: the main run's device settings (accelerator, devices, strategy, precision); they do not
    enter the cache key (a model trained on a GPU serves a CPU run alike). ``items``: the item catalog
    for the factory (content towers; their frozen features are not saved with the model).
    """
    # The stage draws from its own seeded RNG stream, so the run that trains it and the runs that read
    # it from the cache leave the global RNG in the same state (and produce the same target model).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = build_stage_model(factory, prepared, spec, items)
        if checkpoint:
            return load_model_weights(model, checkpoint)
        entry = None
        if cache_dir is not None and describe is not None:
            frozen = frozen_inputs_digest(model)  # content towers: the features the stage model reads
            key = content_key({"version": STAGE_VERSION, "data": prepared.key, "spec": asdict(spec), **describe,
                               **({"frozen_inputs": frozen} if frozen else {})})
            entry = Path(cache_dir) / "stage" / key[:24]
        # Parallel single-process jobs train one stage once (the others wait, then read it). Not under DDP:
        # there every rank must take part in the one training, so a rank waiting on the lock would hang it.
        with entry_lock(entry if _single_process(trainer) else None):
            if entry is not None:
                cached = read_entry(entry, lambda e: load_model_weights(model, e / "model.pt"),
                                    "source-stage model")
                if cached is not None:
                    log.info("source-stage model read from cache %s", entry)
                    return cached
            start = time.time()
            result = train_stage(model, prepared, spec, optimizer, loss, trainer)
            best = "no validation" if result["best_val"] is None else \
                f"best {MONITOR} {result['best_val']:.4f} at epoch {result['best_epoch'] + 1}"
            log.info("source stage (%s) trained in %.1fs: %d epochs, %s", spec.domains, time.time() - start,
                     result["epochs"], best)
            if entry is not None and result.pop("is_global_zero"):
                def write(folder: Path) -> None:
                    torch.save(model.state_dict(), folder / "model.pt")
                    meta = {"spec": asdict(spec), "data_key": prepared.key, **result, **(describe or {})}
                    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

                write_entry(entry, write)
    return model


def frozen_inputs_digest(model: torch.nn.Module) -> str | None:
    """sha256 of the model's non-persistent buffers (the frozen content features of its item towers),
    which a saved state_dict does not carry; None when it has none (id models: their keys stay as before)."""
    persistent = set(model.state_dict())
    digest, seen = hashlib.sha256(), False
    for name, buf in model.named_buffers():
        if name not in persistent:
            seen = True
            digest.update(name.encode())
            digest.update(buf.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest() if seen else None


def _single_process(trainer: Mapping[str, Any] | None) -> bool:
    """Whether the stage trains in this process alone (no DDP over several devices or nodes)."""
    t = dict(trainer or {})
    devices, strategy = t.get("devices", 1), str(t.get("strategy") or "auto")
    several = devices not in (1, "1", [0], None) or int(t.get("num_nodes") or 1) > 1
    return not (several or "ddp" in strategy)
