"""``train(cfg)``: one run from a composed config, end to end.

prepare data -> build model -> ensure the source stage (if the strategy has one: read from the cache, or
trained by this same loop) -> build the strategy -> fit (resume if asked) -> validate and test the best
validation checkpoint -> write ``metrics.json`` into the run folder -> print a metrics table.
``fit_run`` is the loop itself, shared by runs and source stages.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from translearn.build import (
    build_datamodule,
    build_model,
    build_run_data,
    build_strategy,
    build_trainer,
    check_strategy,
)
from translearn.cache import atomic_write_json
from translearn.callbacks import RecordInCheckpoints
from translearn.checkpoint_check import check_state, read_checkpoint
from translearn.checks import check_config
from translearn.cli import config as _config  # noqa: F401  (registers the config resolvers)
from translearn.data.prepared import PreparedData
from translearn.distributed import agree_before_training
from translearn.metrics.per_user import save_per_user
from translearn.provenance import versions
from translearn.report import format_metrics
from translearn.run_record import check_resume, make_record, settings
from translearn.strategies.base import TransferStrategy
from translearn.wandb_logging import finish_wandb_runs, log_data_manifest

log = logging.getLogger(__name__)
# Lightning advice that does not apply here: small epochs on small data, and our own batch transfer.
for _pattern in (r".*smaller than the logging interval.*", r".*overridden `transfer_batch_to_device`.*",
                 r".*LeafSpec.*is deprecated.*", r".*does not have many workers.*",
                 r".*module\(s\) in eval mode at the start of training.*"):  # frozen teachers stay in eval mode
    warnings.filterwarnings("ignore", message=_pattern)


def config_digest(cfg: DictConfig) -> str:
    """sha256 of the resolved settings, with no path of this machine or run in it.

    The ``paths`` node is dropped and every value that interpolates it keeps its interpolation text
    (``data.dataset.root`` digests as ``${paths.data_root}/amazon``); ``resume`` (where training
    restarted from) is dropped too. Equal digests mean equal settings, on any machine.
    """
    return hashlib.sha256(OmegaConf.to_yaml(OmegaConf.create(settings(cfg)), sort_keys=True).encode()).hexdigest()


def _selection_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that selects on a monitored metric (``last.ckpt``'s has no monitor); None
    without one, and then the final epoch is validated and tested."""
    return next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)


def _run_relative(path: str, run_dir: Path) -> str:
    """``path`` relative to the run folder when it lies inside it (so a copied folder stays whole)."""
    try:
        return Path(path).resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def resume_checkpoint(resume: str | None) -> str | None:
    """The checkpoint to resume from: a .ckpt file, or ``<run>/checkpoints/last.ckpt`` for a run folder."""
    if not resume:
        return None
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"config key 'resume': no checkpoint at {path} (give a run folder with "
                                "checkpoints/last.ckpt or a .ckpt file)")
    return str(path)


def _best_epoch(path: str) -> int | None:
    match = re.search(r"epoch(\d+)", Path(path).name)
    return int(match.group(1)) if match else None


def check_selection(checkpoint: ModelCheckpoint, val: dict) -> dict | None:
    """Warn when the best checkpoint, validated again after reloading, does not give the score it was
    selected with: then the model scored differently during training than it does now (e.g. a stale
    cached table), and the epoch was picked on wrong numbers. Returns the mismatch (``metric``,
    ``when_selected``, ``validated_again``), which the run records as ``selection_mismatch``; None if none."""
    recorded, key = checkpoint.best_model_score, checkpoint.monitor
    if recorded is None or key not in val:
        return None
    recorded, again = float(recorded), float(val[key])
    if abs(again - recorded) > 1e-6 + 1e-4 * abs(recorded):
        log.warning("model selection: the best checkpoint scored %s = %.6f when it was selected but %.6f when "
                    "validated again after reloading; the validation during training did not see the model "
                    "as saved, so the selected epoch may be wrong", key, recorded, again)
        return {"metric": key, "when_selected": recorded, "validated_again": again}
    return None


def train(cfg: DictConfig) -> dict:
    """Run one training job and return the summary written to ``metrics.json``.

    A strategy that starts from a source-stage model first ensures its stage (``translearn.stage``): read
    from the cache, or trained by this same loop (``fit_run``) into a cache entry of its own."""
    from translearn.stage import ensure_stage

    start = time.time()
    check_config(cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prepared = build_run_data(cfg)
    log.info("data %s: %s", prepared.key[:12], prepared.stats())
    for line in prepared.report:  # what preprocessing removed and why (the same lines translearn-data prints)
        log.info("preprocessing: %s", line)
    model = build_model(cfg, prepared)
    check_strategy(cfg, prepared, model)  # before a source stage is trained for nothing
    stage = ensure_stage(cfg, prepared)  # None for strategies without one
    strategy = build_strategy(cfg, prepared, model, source_model=stage.model if stage else None)
    agree_before_training(str(run_dir.resolve()), None)  # torchrun: every rank got here, or all stop
    trainer, summary = fit_run(cfg, prepared, strategy, resume=cfg.get("resume"))
    if stage is not None:
        summary.update(stage.record)
    summary["wall_time_s"] = round(time.time() - start, 2)
    if trainer.is_global_zero:
        if strategy.per_user_test is not None:  # for translearn-compare's paired comparisons
            save_per_user(run_dir, *strategy.per_user_test, prepared.data.user_ids)
        atomic_write_json(run_dir / "metrics.json", summary)
        print(format_metrics(summary, title=f"{summary['strategy']} on {summary['data']} "
                                            f"(target {prepared.target}, seed {cfg.seed})"))
        print(f"run folder: {run_dir}")
    finish_wandb_runs(trainer, summary, run_dir, cfg.monitor)  # W&B: summary, gain, artifact; a run per job
    return summary


def fit_run(cfg: DictConfig, prepared: PreparedData, strategy: TransferStrategy, resume: str | None = None,
            splits: tuple[str, ...] = ("val", "test")) -> tuple[pl.Trainer, dict]:
    """The one training loop, for runs and source stages alike: fit ``strategy`` on ``prepared`` with the
    trainer, callbacks and loggers of ``cfg``, then validate and test (``splits``) the checkpoint that
    ``cfg``'s selection callback kept (``resume``: a run folder or checkpoint to resume from). Returns the
    trainer and the summary (nothing is written here but
    what the trainer's callbacks and loggers write into ``cfg.paths.output_dir``)."""
    run_dir = Path(cfg.paths.output_dir)
    datamodule = build_datamodule(cfg, prepared, strategy, splits)
    trainer = build_trainer(cfg)
    trainer.callbacks.append(RecordInCheckpoints(make_record(cfg, prepared, config_digest(cfg))))
    log_data_manifest(trainer, prepared)  # W&B: the data a run used, before it can fail
    resume = resume_checkpoint(resume)  # a run folder -> its last.ckpt; missing: an error the W&B run records
    resumed = {}
    if resume:  # a damaged checkpoint, one of other data or settings, is one clear error, not a traceback
        saved = read_checkpoint(resume)
        check_state(resume, saved["state_dict"], strategy)
        resumed = check_resume(saved, resume, cfg, prepared)  # {"resumed_from": ..., "resume_changed": {...}}
    untrained = cfg.trainer.get("max_epochs") == 0
    if untrained:  # zero-shot: a strategy's starting model (e.g. the source stage copied by finetune) as it is
        log.info("trainer.max_epochs=0: no training; the model as built is evaluated and saved")
    else:
        trainer.fit(strategy, datamodule=datamodule, ckpt_path=resume)

    checkpoint = _selection_checkpoint(trainer)
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    ckpt = best if best else None
    # one dict per dataloader (two with evaluation.sampled_negatives); the keys never collide
    val = {k: v for d in trainer.validate(strategy, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
           for k, v in d.items()} if "val" in splits else {}
    mismatch = check_selection(checkpoint, val) if best and val else None
    if untrained:  # so that translearn-eval, -features and -recommend read the evaluated model
        best = str(Path(checkpoint.dirpath if checkpoint is not None else run_dir / "checkpoints") / "untrained.ckpt")
        trainer.save_checkpoint(best)
    test = {k: v for d in trainer.test(strategy, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
            for k, v in d.items()} if "test" in splits else {}
    summary = {
        **{k: float(v) for k, v in sorted(val.items())},
        **{k: float(v) for k, v in sorted(test.items())},
        "best_checkpoint": _run_relative(best, run_dir) if best else None,
        "best_epoch": None if untrained else _best_epoch(best) if best else trainer.current_epoch - 1,
        "epochs_run": trainer.current_epoch,
        "seed": int(cfg.seed),
        "data_seed": int(cfg.data.seed),
        "repeats": strategy.repeats,
        "selection_mismatch": mismatch,  # not null: the selected epoch was picked on numbers that do not come back
        # what a reader of the numbers must know (e.g. fusion's validation chose its weight: optimistic)
        "evaluation_notes": [note for note in (getattr(strategy, "validation_note", None),) if note],
        "strategy": cfg.strategy._target_.rsplit(".", 1)[-1],
        "data": cfg.data.name,
        "target_domain": prepared.target,
        "source_domains": list(prepared.sources),
        "config_digest": config_digest(cfg),
        "data_manifest_key": prepared.key,
        "data_split_key": prepared.split_key,
        **resumed,
        "wall_time_s": None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
    }
    return trainer, summary
