"""Weights & Biases for translearn runs: the ``logger=wandb`` factory and what a run adds as it goes.

At the start (``wandb_logger``): one W&B run per translearn run, named from the config. Group: the sweep
folder's name for every job of a multirun, the data set's name for a single run; job type: the strategy
class; run name: ``<strategy>-seed<seed>`` (``<job>-<strategy>-seed<seed>`` in a multirun). Metrics are
charted against ``epoch`` (``train/loss_step`` against ``trainer/global_step``). The run config is the
resolved translearn config, with the job's ``hydra_overrides``; ``log_data_manifest`` (called by ``train``
once the data is prepared) adds ``data_manifest``, so a run that fails later still says what it ran on.

At the end (``finish_wandb_runs``, called by ``train``): the summary gets every key of ``metrics.json`` and,
when a finished ``target_only`` run of the same group used the same data and seed, the gain over it
(``gain/test/...``, see ``translearn.wandb_baseline``); with ``log_model`` the selected checkpoint becomes
a ``model`` artifact; ``wandb.json`` in the run folder names the W&B run; then the run is finished, so the
next job of a sweep gets a run of its own. A job that ends in a user error calls ``fail_wandb_runs``: its
run gets the error in its summary and is finished as failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from translearn.cache import atomic_write_json
from translearn.wandb_baseline import RUN_FILE, baseline_candidates, baseline_gain

log = logging.getLogger(__name__)


class TranslearnWandbLogger(WandbLogger):
    """``WandbLogger`` for one translearn run.

    History rows are the epochs of ``fit``; what is logged after it (the selected checkpoint validated and
    tested again) goes to the summary, so no chart gains a point for an epoch that was never trained.
    """

    def __init__(self, *, store_checkpoint: bool = False, **kwargs: Any) -> None:
        import wandb

        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)  # wandb >= 0.19 warns about the setting even when unset
        self.store_checkpoint = store_checkpoint  # log_model: the checkpoint becomes an artifact at the end
        self.owns_run = wandb.run is None  # False: Lightning reuses a run the caller started (left open)
        self.fit_done = False
        self.config_logged = False

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Set the run config from the first call only: ``build_trainer``'s resolved config. Lightning calls
        again at each ``fit``/``validate``/``test`` with the strategy's own arguments (``lam``, ``ks``, ...),
        which repeat ``strategy.*`` and ``evaluation.*`` at the top level, where a name could also replace a
        config node; those calls are dropped."""
        if not self.config_logged:
            super().log_hyperparams(params)
            self.config_logged = True

    def finalize(self, status: str) -> None:
        super().finalize(status)
        self.fit_done = True  # Lightning finalizes its loggers when a stage ends: the first is fit

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.fit_done:
            super().log_metrics(metrics, step)
        else:
            self.experiment.summary.update({k: v for k, v in metrics.items() if k != "epoch"})


_open: list[TranslearnWandbLogger] = []  # loggers whose run is started and not finished yet


def _hydra() -> Any:
    """Hydra's config of the running job, or None outside ``translearn-train`` (e.g. ``compose`` from Python)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_folder() -> Path | None:
    """The multirun's sweep folder (``hydra.sweep.dir``), or None for a single run."""
    from hydra.types import RunMode

    hc = _hydra()
    return Path(str(hc.sweep.dir)) if hc is not None and hc.mode == RunMode.MULTIRUN else None


def run_identity(data: str, strategy: str, seed: int, group: str | None = None, job_type: str | None = None,
                 name: str | None = None) -> dict[str, str]:
    """``group``, ``job_type`` and ``name`` of the W&B run, each the given value or its default."""
    sweep, cls = sweep_folder(), str(strategy).rsplit(".", 1)[-1]
    job_type = job_type or cls
    if not name:
        name = f"{job_type}-seed{seed}"
        if sweep is not None:
            name = f"{_hydra().job.num}-{name}"
    return {"group": group or (sweep.name if sweep is not None else str(data)), "job_type": job_type, "name": name}


def wandb_logger(project: str = "translearn", save_dir: str | Path = ".", entity: str | None = None,
                 group: str | None = None, job_type: str | None = None, name: str | None = None,
                 tags: Sequence[str] = (), log_model: bool = False, offline: bool | None = None,
                 run_facts: Mapping[str, Any] | None = None, **kwargs: Any) -> TranslearnWandbLogger:
    """A W&B logger for one translearn run; offline when no API key is configured (``WANDB_API_KEY`` or
    ``~/.netrc``) or ``WANDB_MODE=offline``; offline runs are uploaded later with ``wandb sync``.

    ``run_facts``: ``data`` (name), ``strategy`` (``_target_``) and ``seed``, for the default group, job
    type and name. ``log_model``: store the selected checkpoint as an artifact when the run ends.
    Extra keyword arguments go to ``wandb.init``.
    """
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "dryrun") or not (
            os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").is_file())
    facts = dict(run_facts or {})
    identity = run_identity(facts.get("data", "translearn"), facts.get("strategy", "run"), facts.get("seed", 0),
                            group, job_type, name)
    if _open:  # an earlier job of this process ended in an error before its run was finished (from Python)
        log.warning("finishing %d W&B run(s) an earlier job left open, as failed", len(_open))
        fail_wandb_runs({"error": "unknown", "message": "the job ended before its W&B run was finished"})
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = TranslearnWandbLogger(store_checkpoint=bool(log_model), project=project, save_dir=str(save_dir),
                                   entity=entity, tags=list(tags), offline=offline, **identity, **kwargs)
    run = logger.experiment  # started now (rank 0; a stand-in elsewhere), so the step metric is set up first
    if logger.owns_run and hasattr(run, "define_metric"):  # replaces Lightning's "*" -> trainer/global_step
        run.define_metric("epoch")
        run.define_metric("*", step_metric="epoch", step_sync=True)
        run.define_metric("train/loss_step", step_metric="trainer/global_step", step_sync=True)  # per step
    if logger.owns_run:
        hc = _hydra()
        run.config.update({"hydra_overrides": list(hc.overrides.task) if hc is not None else []},
                          allow_val_change=True)
        _open.append(logger)
    return logger


def _wandb_loggers(trainer: Any) -> list[TranslearnWandbLogger]:
    """The ``TranslearnWandbLogger``s of ``trainer`` on rank 0 (none elsewhere: other ranks log nothing)."""
    if not trainer.is_global_zero:
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, TranslearnWandbLogger)]


def log_data_manifest(trainer: Any, prepared: Any) -> None:
    """Add the prepared data's manifest (key, domains, split, stats, preprocessing report) to the config of
    every W&B run of ``trainer``."""
    for logger in _wandb_loggers(trainer):
        logger.experiment.config.update({"data_manifest": prepared.manifest()}, allow_val_change=True)


def fail_wandb_runs(error: Mapping[str, Any]) -> None:
    """Put ``error`` (what ``error.json`` holds) in the summary of every open W&B run of this process and
    finish each as failed (exit code 1). For a job that ended in a user error."""
    while _open:
        logger = _open.pop()
        run = logger._experiment
        if run is not None and hasattr(run, "finish"):
            run.summary.update({"error": dict(error)})
            run.finish(exit_code=1)


def _store_checkpoint(run: Any, run_dir: Path, summary: Mapping[str, Any], monitor: str) -> None:
    """Log the selected checkpoint (else ``last.ckpt``) as a ``model`` artifact (offline: uploaded on sync)."""
    import wandb

    rel = summary.get("best_checkpoint") or "checkpoints/last.ckpt"
    path = run_dir / rel
    if not path.is_file():
        log.warning("log_model: no checkpoint to store (%s is missing)", path)
        return
    meta = {k: summary.get(k) for k in ("strategy", "data", "seed", "best_epoch", "data_manifest_key",
                                        "config_digest", monitor)}
    artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=meta)
    try:  # immutable: the file is read from the run folder when uploaded, not copied to W&B's staging area
        artifact.add_file(str(path), name=path.name, policy="immutable")
    except TypeError:  # wandb < 0.17 has no policy
        artifact.add_file(str(path), name=path.name)
    run.log_artifact(artifact, aliases=["best" if summary.get("best_checkpoint") else "latest"])


def _write_run_file(run: Any, run_dir: Path, offline: bool) -> None:
    """``<run>/wandb.json``: the W&B run this run folder logged to (and how to find it again)."""
    atomic_write_json(run_dir / RUN_FILE, {"id": run.id, "project": run.project, "entity": run.entity or None,
                                           "group": run.group, "job_type": run.job_type, "name": run.name,
                                           "offline": offline, "dir": os.path.relpath(run.dir, run_dir)})


def finish_wandb_runs(trainer: Any, summary: Mapping[str, Any], run_dir: str | Path, monitor: str) -> None:
    """Add the final summary (and gain), the checkpoint if asked, and ``wandb.json``, then finish the W&B
    run of every ``TranslearnWandbLogger`` of ``trainer``. Rank 0 only; other loggers are left alone."""
    run_dir = Path(run_dir)
    for logger in _wandb_loggers(trainer):
        run = logger.experiment
        sweep = sweep_folder()
        candidates = baseline_candidates(run_dir, sweep, run.project, run.group)
        gain = baseline_gain(summary, candidates, monitor, relative_to=sweep or run_dir.parent)
        run.summary.update({**summary, **gain})
        if logger.store_checkpoint:
            _store_checkpoint(run, run_dir, summary, monitor)
        _write_run_file(run, run_dir, logger._offline)
        if logger.owns_run:
            run.finish()
        if logger in _open:
            _open.remove(logger)
