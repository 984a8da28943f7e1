"""The source stage: a run of the one training loop whose best checkpoint later runs consume.

Fine-tuning, feature reuse and mapping start from a model trained on the source domains; distillation
and fusion use a model that can also score target items (trained on sources + target training rows,
i.e. a joint model). ``ensure_stage`` (called by ``train``) derives the stage's own run config from the
main run's (``stage_config``: the same model, optimiser, loss, trainer devices and loggers; ``Joint`` over
the stage's domains, or ``TargetOnly`` on a single one; the stage spec's epochs, patience, min_steps and
batch size; the monitor ``val/<validated domain>/<the main run's metric>`` with its mode from the metric)
and runs it through ``translearn.train.fit_run``, the loop every run goes through, on
``views.stage_view``: the stage's domains, training rows only, each user's last row of the validated
domain held out for validation. The main run's data stays whole.

The stage is content-keyed: ``<paths.cache_dir>/stage/<key>/`` holds its run folder (``checkpoints/``,
``metrics.json``, ``meta.json``, ``config.yaml``, ``train.log``, the CSV log), written atomically, so a sweep
over the transfer step's own knobs (lambda, alpha, freeze lists, ...) reads the same stage. Parallel jobs
take the entry's lock and train it once; under DDP every process takes part in the stage's one training
and rank 0 writes the entry. Builders and the read-only tools never train: ``read_stage`` reads a stage
(or ``strategy.source_ckpt``) and a missing one is a one-line ``StageMissingError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from translearn.cache import atomic_write_json, content_key, entry_lock, read_entry, write_entry
from translearn.data.prepared import PreparedData
from translearn.data.views import EmptySliceError
from translearn.errors import ConfigError, UserError
from translearn.evaluation.loaders import TARGET
from translearn.metrics.direction import HIGHER_IS_BETTER
from translearn.models.recommender import Recommender

log = logging.getLogger(__name__)
# 2: the largest domain sets the epoch of multi-domain stages; 3: Lightning trainer, early stopping on a
# validation slice of the stage's own training rows, best epoch's weights; 4: content towers (MF/NCF text,
# id_text, image) are validated on their current item table (a fused Adam step left a stale one cached);
# 5: the stage is a run of the main loop (Joint / TargetOnly over the stage view, the main run's metric and
# mode, the trainer's settings in the key); the entry is its run folder with its best checkpoint.
# Not bumped for the model.content node: the key hashes the model node as configured, so an entry keyed by the
# old flat keys is never found again (those stages train once more); the entry's format did not change.
STAGE_VERSION = 5
TRAINER_KEYS = ("accelerator", "devices", "strategy", "precision", "num_nodes")  # taken from the main run
# trainer keys that change neither the stage's weights nor its epochs (left out of its key, with the devices)
_NOT_IN_KEY = (*TRAINER_KEYS, "max_epochs", "enable_progress_bar", "enable_model_summary", "log_every_n_steps")
STRATEGIES = "translearn.strategies."


class StageMissingError(UserError, FileNotFoundError):
    """A strategy needs a source stage that is neither in the cache nor given as ``strategy.source_ckpt``."""


@dataclass
class Stage:
    """A source-stage model ready for the transfer step, and what the consuming run records about it
    (``stage_dir`` and ``stage/...`` keys of its ``metrics.json``)."""

    model: Recommender
    record: dict[str, Any]


@dataclass(frozen=True)
class StageSpec:
    """How the stage model is trained.

    domains:         ``sources`` (source domains only) or ``all`` (sources + target training rows, joint)
    max_epochs:      at most this many passes over the largest stage domain's training rows
    patience:        epochs without a better validation value of the stage's monitor (the main run's metric,
                     on the validated domain) before the stage stops (its best checkpoint is kept); None
                     trains ``max_epochs`` on all rows, without a validation slice
    min_steps:       optimiser steps before early stopping may end the stage (experiments/README.md, the
                     defaults study: sparse domains have few steps per epoch)
    validate:        the domain whose slice validates the stage; None: the target under ``all`` (the
                     teacher's job is to score target items), the first source under ``sources``
    batch_size:      training rows (labelled positions for sequence models) per step; None: 2048 for id
                     models, 256 for sequence models (the CLI passes the main run's)
    lam:             target weight when ``domains='all'`` (the stage is a ``Joint`` run: ``loss = loss_s + lam *
                     loss_t``, ``t`` the validated domain)
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
        if self.domains == "all" and name != prepared.target and self.lam != 1.0:
            raise ValueError(f"strategy.stage.lam={self.lam} weights the target, but the stage validates on "
                             f"{name!r}, which its Joint run would weight instead; leave lam at 1 or validate on "
                             f"the target")
        return name


def load_model_weights(model: Recommender, path: str | Path) -> Recommender:
    """Load a ``model.pt`` state dict or a run's or stage's Lightning checkpoint (its ``model.*`` weights).

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


def stage_spec(cfg: DictConfig) -> StageSpec:
    """``cfg.strategy.stage`` as a ``StageSpec`` (a one-line ConfigError when a value is wrong); its batch size
    defaults to the main run's (``data.batch_size``, or ``data.sequence_batch_size`` for sequence models)."""
    try:
        spec = StageSpec(**_plain(cfg.strategy.get("stage") or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key 'strategy.stage': {err}", config_key="strategy.stage") from err
    if spec.batch_size is None:
        spec = replace(spec, batch_size=_main_batch_size(cfg))
    return spec


def _main_batch_size(cfg: DictConfig) -> int:
    from translearn.build import _instantiate, train_batch_size
    from translearn.models.factory import accepts

    factory = _instantiate(cfg.model, "model")
    # a tiny model that tells the family (the id tower: it reads no content)
    probe = factory(num_users=1, num_items={str(cfg.data.target_domain): 1},
                    **({"content": None} if accepts(factory, "content") else {}))
    return train_batch_size(cfg, probe)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def stage_monitor(cfg: DictConfig, domain: str) -> str:
    """``val/<domain>/<metric>``: the main run's selection metric (its last part, e.g. ``ndcg@10`` or
    ``rmse``), on the domain the stage validates on."""
    return f"val/{domain}/{str(cfg.monitor).rsplit('/', 1)[-1]}"


def source_shell(cfg: DictConfig, prepared: PreparedData) -> Recommender:
    """An untrained model of the stage's shape: the main run's model config (``strategy.stage.embedding_dim``
    if set) with item towers for the stage's domains."""
    from translearn.build import _instantiate, build_catalog
    from translearn.content.text import unload_encoders
    from translearn.models.factory import call_factory

    spec = stage_spec(cfg)
    kwargs = {"embedding_dim": spec.embedding_dim} if spec.embedding_dim else {}
    model = call_factory(_instantiate(cfg.model, "model"), build_catalog(cfg, prepared),
                         num_users=prepared.num_users,
                         num_items={d: prepared.num_items(d) for d in spec.train_domains(prepared)}, **kwargs)
    unload_encoders()
    return model


def stage_entry(cfg: DictConfig, prepared: PreparedData, spec: StageSpec, shell: Recommender) -> Path:
    """The stage's cache folder, ``<paths.cache_dir>/stage/<key>`` (``<run folder>/stage/<key>`` without a cache):
    the key covers the prepared data, the stage spec, the model, optimiser, loss and trainer settings (not the
    devices) and a content tower's frozen inputs, so the same stage is found again on any machine."""
    trainer = {k: v for k, v in (_plain(cfg.get("trainer")) or {}).items() if k not in _NOT_IN_KEY}
    frozen = frozen_inputs_digest(shell)  # content towers: the features the stage model reads
    key = content_key({"version": STAGE_VERSION, "data": prepared.key, "spec": asdict(spec),
                       "model": _plain(cfg.model), "optimizer": _plain(cfg.optimizer), "loss": _plain(cfg.loss),
                       "trainer": trainer, **({"frozen_inputs": frozen} if frozen else {})})
    cache = cfg.paths.get("cache_dir")  # no cache (paths.cache_dir=null): the stage lives in the run's folder
    return Path(cache if cache is not None else cfg.paths.output_dir) / "stage" / key[:24]


def stage_config(cfg: DictConfig, prepared: PreparedData, spec: StageSpec, folder: str | Path,
                 validated: bool = True) -> DictConfig:
    """The stage's run config, derived from the main run's ``cfg``: what ``fit_run`` trains the stage with.

    Same model (``strategy.stage.embedding_dim`` if set), optimiser, loss and trainer (devices, precision,
    ...); ``Joint`` over the stage's domains (``loss = loss_s + lam * loss_t``, ``t`` the validated domain) or
    ``TargetOnly`` on a single domain; no scheduler (as the stage always had); the spec's epochs, batch size,
    negatives and seed; the monitor ``stage_monitor`` with its mode from the metric; the selection,
    early-stopping and epoch-log callbacks of ``conf/callbacks/default.yaml`` with the spec's patience and
    min_steps; a CSV log; the run folder ``folder``."""
    validate = spec.validate_domain(prepared)
    domains = spec.train_domains(prepared)
    monitor = stage_monitor(cfg, validate)
    metric = monitor.rsplit("/", 1)[-1]
    name, _, k = metric.partition("@")
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["paths"]["output_dir"] = str(folder)
    plain.update(seed=spec.seed, resume=None, monitor=monitor, optimized_metric=monitor, scheduler=None)
    plain["data"].update(batch_size=spec.batch_size, sequence_batch_size=spec.batch_size,
                         eval_batch_size=spec.eval_batch_size, num_negatives=spec.num_negatives)
    plain["evaluation"] = {"ks": [int(k) if k else 10], "metrics": [name if name in HIGHER_IS_BETTER else "ndcg"],
                           "repeats": "mask", "domains": ["target"], "sampled_negatives": None}
    plain["strategy"] = ({"_target_": STRATEGIES + "Joint", "lam": spec.lam if validate == prepared.target else 1.0,
                          "weighting": "fixed"} if len(domains) > 1 else {"_target_": STRATEGIES + "TargetOnly"})
    if spec.embedding_dim:
        plain["model"]["embedding_dim"] = spec.embedding_dim
    plain["trainer"]["max_epochs"] = spec.max_epochs
    if not validated:
        plain["trainer"]["limit_val_batches"] = 0
    callbacks = OmegaConf.to_container(OmegaConf.load(_conf_dir() / "callbacks" / "default.yaml"), resolve=False)
    callbacks.pop("last_checkpoint")  # a stage is not resumed: its best checkpoint is what it leaves
    if validated:
        callbacks["early_stopping"].update(patience=spec.patience, min_steps=spec.min_steps)
    else:  # no validation slice: the last epoch's weights, in checkpoints/last.ckpt
        callbacks.pop("early_stopping")
        callbacks["model_checkpoint"].update(monitor=None, filename="last", mode="min")
    callbacks["epoch_log"]["name"] = "source stage"  # "source stage epoch 3/200 loss ... val/arts/ndcg@10 ..."
    plain["callbacks"] = callbacks
    plain["logger"] = {"csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": "${paths.output_dir}",
                               "name": "csv", "version": ""}} if plain.get("logger") else None
    return OmegaConf.create(plain)


def _conf_dir() -> Path:
    from translearn.cli.config import config_dir

    return Path(config_dir())


def read_stage(cfg: DictConfig, prepared: PreparedData) -> Recommender:
    """The stage model from ``strategy.source_ckpt`` or the cache, never trained here: a missing stage is a
    one-line ``StageMissingError`` naming the command that trains it."""
    stage = _find_stage(cfg, prepared)
    if isinstance(stage, Stage):
        return stage.model
    raise StageMissingError(
        f"source stage missing: {cfg.strategy._target_.rsplit('.', 1)[-1]} starts from a stage model that is not "
        f"in the cache ({stage}); train it with the run's own command, `translearn-train <its overrides> "
        f"paths.cache_dir={cfg.paths.cache_dir}` (with trainer.max_epochs=0 it trains the stage and only "
        "evaluates), or set "
        "strategy.source_ckpt=<a stage checkpoint or run .ckpt>", file=stage)


def _find_stage(cfg: DictConfig, prepared: PreparedData) -> Stage | Path:
    """The stage (``strategy.source_ckpt``, or the verified cache entry) or, when it is missing, its entry path."""
    spec = stage_spec(cfg)
    with _own_rng(spec.seed):
        shell = source_shell(cfg, prepared)
    given = cfg.strategy.get("source_ckpt")
    if given:
        return Stage(load_model_weights(shell, given), {"stage_dir": None, "source_ckpt": str(given)})
    entry = stage_entry(cfg, prepared, spec, shell)
    found = read_entry(entry, lambda e: _load_entry(e, shell), "source-stage")
    return found if found is not None else entry


def _load_entry(entry: Path, shell: Recommender) -> Stage:
    metrics = json.loads((entry / "metrics.json").read_text())
    meta = json.loads((entry / "meta.json").read_text())
    model = load_model_weights(shell, entry / meta["checkpoint"])
    log.info("source-stage model read from cache %s", entry)
    return Stage(model.cpu().eval(), stage_record(entry, metrics))


def stage_record(entry: Path | None, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What the consuming run's ``metrics.json`` says about its stage: ``stage_dir`` and ``stage/<key>`` for
    the stage's validation metrics, ``epochs_run`` and ``best_epoch``."""
    keep = {k: v for k, v in metrics.items() if k.startswith("val/") or k in ("epochs_run", "best_epoch")}
    return {"stage_dir": str(entry) if entry is not None else None, **{f"stage/{k}": v for k, v in keep.items()}}


def ensure_stage(cfg: DictConfig, prepared: PreparedData) -> Stage | None:
    """The source stage of ``cfg.strategy`` for ``train``: ``strategy.source_ckpt``, the cached entry, or a
    run of the main loop trained now into the entry (None when the strategy starts from no stage)."""
    from translearn.build import strategy_class

    if not strategy_class(cfg).uses_source_model:
        return None
    found = _find_stage(cfg, prepared)
    if isinstance(found, Stage):
        return found
    entry = found
    # Parallel single-process jobs train one stage once (the others wait, then read it). Not under DDP:
    # there every rank takes part in the one training, so a rank waiting on the lock would hang it.
    with entry_lock(entry if _single_process(cfg.get("trainer")) else None):
        again = _find_stage(cfg, prepared)
        if isinstance(again, Stage):
            return again
        return _train_stage(cfg, prepared, entry)


def _train_stage(cfg: DictConfig, prepared: PreparedData, entry: Path) -> Stage:
    """Train the stage with ``fit_run`` in ``<entry>``'s temporary run folder, then move it into place."""
    from translearn.build import build_model, build_strategy
    from translearn.train import fit_run

    spec = stage_spec(cfg)
    validate = spec.validate_domain(prepared)
    domains = spec.train_domains(prepared)
    validated = spec.patience is not None
    try:
        view = prepared.stage_view(domains, validate, spec.seed, hold_out=validated)
    except EmptySliceError as err:  # refused: the stage would train its whole budget unvalidated
        raise ConfigError(f"config key 'strategy.stage.patience': {err}, so the stage cannot be validated; set "
                          "strategy.stage.patience=null to train all strategy.stage.max_epochs epochs without "
                          "validation", config_key="strategy.stage.patience") from None
    folder = entry.parent / f".tmp-{entry.name}-train"  # the same on every DDP rank
    rank_zero = rank_zero_only.rank == 0
    if rank_zero and folder.exists():  # a killed run's leftover (the lock, or DDP's launch order, keeps it ours)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stage_cfg = stage_config(cfg, prepared, spec, folder, validated)
    monitor = stage_cfg.monitor if validated else None
    log.info("source stage (%s over %s) trains in %s, validated on %s", spec.domains, ", ".join(domains),
             entry, monitor or "nothing (no validation slice)")
    start = time.time()
    with _own_rng(spec.seed), _log_file(folder / "train.log" if rank_zero else None):
        model = build_model(stage_cfg, view)
        strategy = build_strategy(stage_cfg, view, model)
        strategy.training_name = "source stage"  # "source stage diverged at epoch ..."
        name_validated_domain(strategy, validate)
        trainer, summary = fit_run(stage_cfg, view, strategy, splits=("val",) if validated else ())
    summary["wall_time_s"] = round(time.time() - start, 2)
    best = summary["best_checkpoint"] or "checkpoints/last.ckpt"
    value = summary.get(monitor) if monitor else None
    log.info("source stage (%s) trained in %.1fs: %d epochs, %s", spec.domains, time.time() - start,
             summary["epochs_run"], f"best {monitor} {value:.4f} at epoch {summary['best_epoch'] + 1}"
             if value is not None else "no validation")
    if trainer.is_global_zero:
        meta = {"version": STAGE_VERSION, "spec": asdict(spec), "data_key": prepared.key, "checkpoint": best,
                "validated_on": validate if validated else None, "monitor": monitor, "epochs": summary["epochs_run"],
                "best_epoch": summary["best_epoch"], "world_size": trainer.world_size}

        def move(tmp: Path) -> None:
            atomic_write_json(folder / "metrics.json", summary)
            atomic_write_json(folder / "meta.json", meta)
            (folder / "config.yaml").write_text(OmegaConf.to_yaml(stage_cfg, resolve=True))
            for item in list(folder.iterdir()):
                shutil.move(str(item), tmp / item.name)

        write_entry(entry, move)
        shutil.rmtree(folder, ignore_errors=True)
    return Stage(strategy.model.cpu().eval(), stage_record(entry, summary))


def name_validated_domain(strategy: Any, domain: str) -> None:
    """Log the stage's metrics under the domain it validates on (``val/arts/ndcg@10``), not ``val/target``:
    the stage view's target role is whichever domain holds the validation slice."""
    strategy.evaluator.labels[TARGET] = domain


@contextlib.contextmanager
def _own_rng(seed: int) -> Iterator[None]:
    """Seed every generator with ``seed`` inside, and put the caller's states back after: the run that trains
    the stage and the runs that read it from the cache go on from the same random state."""
    states = random.getstate(), np.random.get_state()
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    with torch.random.fork_rng(devices=[]):
        pl.seed_everything(seed, workers=True, verbose=False)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def _log_file(path: Path | None) -> Iterator[None]:
    """Copy this process's log lines into ``path`` (the stage's ``train.log``) while inside."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


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


def _single_process(trainer: Any) -> bool:
    """Whether the stage trains in this process alone (no DDP over several devices or nodes)."""
    t = dict(_plain(trainer) or {})
    devices, strategy = t.get("devices", 1), str(t.get("strategy") or "auto")
    several = devices not in (1, "1", [0], None) or int(t.get("num_nodes") or 1) > 1
    return not (several or "ddp" in strategy)
