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

The package's parts: ``spec`` (``StageSpec``: how the stage trains), ``run_config`` (its run config, derived from
the main run's), ``entry`` (the cache entry: key, weights, record) and ``process`` (random state, log file).
This module ties them together: ``ensure_stage``, ``read_stage`` and the training itself (``_train_stage``).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from translearn.cache import atomic_write_json, entry_lock, read_entry, write_entry
from translearn.data.prepared import PreparedData
from translearn.data.views import EmptySliceError
from translearn.errors import ConfigError, UserError
from translearn.models.recommender import Recommender
from translearn.stage.entry import (
    STAGE_VERSION,
    TRAINER_KEYS,
    Stage,
    frozen_inputs_digest,
    load_entry,
    load_model_weights,
    stage_entry,
    stage_record,
)
from translearn.stage.process import log_file, own_rng, single_process
from translearn.stage.run_config import STRATEGIES, name_validated_domain, stage_config, stage_monitor
from translearn.stage.spec import StageSpec, stage_spec

__all__ = ["STAGE_VERSION", "STRATEGIES", "TRAINER_KEYS", "Stage", "StageMissingError", "StageSpec", "ensure_stage",
           "frozen_inputs_digest", "load_model_weights", "name_validated_domain", "read_stage", "source_shell",
           "stage_config", "stage_entry", "stage_monitor", "stage_record", "stage_spec"]

log = logging.getLogger(__name__)


class StageMissingError(UserError, FileNotFoundError):
    """A strategy needs a source stage that is neither in the cache nor given as ``strategy.source_ckpt``."""


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
    with own_rng(spec.seed):
        shell = source_shell(cfg, prepared)
    given = cfg.strategy.get("source_ckpt")
    if given:
        return Stage(load_model_weights(shell, given), {"stage_dir": None, "source_ckpt": str(given)})
    entry = stage_entry(cfg, prepared, spec, shell)
    found = read_entry(entry, lambda e: load_entry(e, shell), "source-stage")
    return found if found is not None else entry


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
    with entry_lock(entry if single_process(cfg.get("trainer")) else None):
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
    with own_rng(spec.seed), log_file(folder / "train.log" if rank_zero else None):
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
