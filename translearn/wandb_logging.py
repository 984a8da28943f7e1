"""Weights & Biases for translearn runs: the ``logger=wandb`` factory and what a run adds at its end.

At the start (``wandb_logger``): one W&B run per translearn run, named from the config. Group: the sweep
folder's name for every job of a multirun, the data set's name for a single run; job type: the strategy
class; run name: ``<strategy>-seed<seed>`` (``<job>-<strategy>-seed<seed>`` in a multirun). Metrics are
charted against ``epoch`` (``train/loss_step`` against ``trainer/global_step``).

At the end (``finish_wandb_runs``, called by ``train``): the data manifest and the Hydra overrides join
the run config (the resolved config is there already); the summary gets every key of ``metrics.json``
and, when a finished ``target_only`` run of the same sweep used the same data and seed, the gain over it
(``gain/test/...``); with ``log_model`` the selected checkpoint becomes a ``model`` artifact; then the run
is finished, so the next job of a sweep gets a run of its own.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from translearn.metrics.direction import metric_mode

log = logging.getLogger(__name__)
BASELINE = "TargetOnly"  # the strategy class transfer gains are measured against


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
    _finish_left_open()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = TranslearnWandbLogger(store_checkpoint=bool(log_model), project=project, save_dir=str(save_dir),
                                   entity=entity, tags=list(tags), offline=offline, **identity, **kwargs)
    run = logger.experiment  # started now (rank 0; a stand-in elsewhere), so the step metric is set up first
    if logger.owns_run and hasattr(run, "define_metric"):  # replaces Lightning's "*" -> trainer/global_step
        run.define_metric("epoch")
        run.define_metric("*", step_metric="epoch", step_sync=True)
        run.define_metric("train/loss_step", step_metric="trainer/global_step", step_sync=True)  # per step
    if logger.owns_run:
        _open.append(logger)
    return logger


def finish_failed_runs() -> None:
    """Finish, as failed, the W&B runs of a job that just ended in an error (called by translearn-train, so
    the run is closed and flushed now rather than by wandb's exit hook, which may not finish in time)."""
    _finish_left_open()


def _finish_left_open() -> None:
    """Finish, as failed, a run an earlier job of this process left open (it ended in an error)."""
    while _open:
        left = _open.pop()
        if left._experiment is not None and hasattr(left._experiment, "finish"):
            log.warning("finishing W&B run %s of an earlier job that ended in an error", left._experiment.id)
            left._experiment.finish(exit_code=1)


def _gain(value: float, base: float, key: str) -> float | None:
    """Relative gain of ``value`` over ``base``, positive when better (lower is better for rmse, mae, ...)."""
    try:
        mode = metric_mode(key)
    except ValueError:
        return None
    if not base:
        return None
    return (value - base) / abs(base) if mode == "max" else (base - value) / abs(base)


def find_baseline(summary: Mapping[str, Any], folder: Path, monitor: str) -> tuple[Path, dict] | None:
    """The finished ``target_only`` run under ``folder`` for the run ``summary`` describes: same data
    (``data_manifest_key``), seed and ``repeats`` rule; of several (a search over its knobs), the best on
    ``monitor`` (validation). Returns (its run folder, its metrics.json), or None."""
    found = []
    for path in sorted(folder.rglob("metrics.json")):
        try:
            other = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # another job writing it now, or not ours
        if other.get("strategy") == BASELINE and all(other.get(k) == summary.get(k) for k in
                                                     ("data_manifest_key", "seed", "repeats")):
            found.append((path.parent, other))
    scored = [(run, m) for run, m in found if isinstance(m.get(monitor), int | float)]
    if not scored:
        return found[0] if found else None
    sign = 1.0 if metric_mode(monitor) == "max" else -1.0
    return max(scored, key=lambda item: sign * item[1][monitor])


def baseline_gain(summary: Mapping[str, Any], sweep: Path | None, monitor: str) -> dict[str, Any]:
    """``{"gain/<test key>": relative gain, "baseline_run": its folder}`` over the matching ``target_only``
    run of the ``sweep`` folder (see ``find_baseline``); empty for no sweep (a single run), for a baseline
    run itself, or when none has finished."""
    if sweep is None or summary.get("strategy") == BASELINE:
        return {}
    found = find_baseline(summary, sweep, monitor)
    if found is None:
        return {}
    folder, base = found
    out: dict[str, Any] = {"baseline_run": os.path.relpath(folder, sweep)}
    for key, value in summary.items():
        if key.startswith("test/") and isinstance(value, int | float) and isinstance(base.get(key), int | float):
            gain = _gain(float(value), float(base[key]), key)
            if gain is not None:
                out[f"gain/{key}"] = gain
    return out


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


def finish_wandb_runs(trainer: Any, prepared: Any, summary: Mapping[str, Any], run_dir: str | Path,
                      monitor: str) -> None:
    """Add the data manifest, the final summary (and gain), the checkpoint if asked, and finish the W&B
    run of every ``TranslearnWandbLogger`` of ``trainer``. Rank 0 only; other loggers are left alone."""
    if not trainer.is_global_zero:
        return
    run_dir = Path(run_dir)
    for logger in trainer.loggers:
        if not isinstance(logger, TranslearnWandbLogger):
            continue
        run = logger.experiment
        hc = _hydra()
        run.config.update({"data_manifest": prepared.manifest(),
                           "hydra_overrides": list(hc.overrides.task) if hc is not None else []},
                          allow_val_change=True)
        run.summary.update({**summary, **baseline_gain(summary, sweep_folder(), monitor)})
        if logger.store_checkpoint:
            _store_checkpoint(run, run_dir, summary, monitor)
        if logger.owns_run:
            run.finish()
        if logger in _open:
            _open.remove(logger)
