"""translearn-train: train one strategy (or a sweep with -m) from the Hydra configs in conf/.

  translearn-train                                   # synthetic data, MF, joint, CPU
  translearn-train data=arts_office strategy=target_only seed=1
  translearn-train -m strategy=target_only,joint seed=0,1,2
  translearn-train --help                            # config groups and options

A user error (bad data, config value, missing file, corrupt checkpoint) prints one line
``translearn-train: error: <message>``, writes ``error.json`` into the run folder (no metrics.json)
and exits with status 2; in a sweep the other jobs run on and the sweep exits 2 at the end, listing
the failed job folders. ``HYDRA_FULL_ERROR=1`` shows the traceback instead. Any other exception is a bug: the
job still writes ``error.json`` (its message starts ``internal error``) and ``traceback.txt``, a sweep runs on
and prints its summary, and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from translearn import distributed
from translearn.cli.config import config_dir, normalise_overrides
from translearn.errors import (
    FORCED_FULL_ERROR_ENV,
    INTERNAL_PREFIX,
    USER_ERROR_EXIT,
    debug_requested,
    is_user_error,
    one_line,
)

PROG = "translearn-train"
_jobs: list[str] = []  # run folders of the jobs this process ran
_failed: list[tuple[str, str]] = []  # (run folder, one-line message) of the jobs that failed


@hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | None:
    from translearn.checks import check_config

    folder = str(Path(HydraConfig.get().runtime.output_dir).resolve())
    _jobs.append(folder)
    _share_cores()
    try:
        check_config(cfg)  # before the slow import of the training stack: a config typo fails in a second or two
        from translearn.train import train

        summary = train(cfg)
    except Exception as err:
        with contextlib.suppress(Exception):  # torchrun: the other ranks stop too (a failure before training)
            distributed.agree_before_training(folder, err)
        _record_failure(Path(folder), err)
        if debug_requested():
            raise
        return None
    value = summary.get(cfg.get("optimized_metric") or "")
    # a sweeper gets a finite float or None (a failed trial); never NaN, which optuna 2.10 cannot take
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _share_cores() -> None:
    """Under a parallel launcher (``hydra/launcher=joblib``), give each job its share of the cores so that
    ``n_jobs`` jobs do not oversubscribe the machine (torch would start one thread per core in each)."""
    launcher = HydraConfig.get().launcher
    if "Joblib" not in str(launcher.get("_target_", "")):
        return
    import torch

    cores = os.cpu_count() or 1
    n_jobs = int(launcher.get("n_jobs") or -1)
    jobs = cores if n_jobs < 1 else min(n_jobs, cores)
    torch.set_num_threads(max(1, cores // jobs))


def _record_failure(folder: Path, err: BaseException) -> None:
    """Write ``error.json`` into the job's folder (when it can be a folder) and remember the failure. An
    internal error (a bug) also saves its traceback beside it, as ``traceback.txt``, and prints it."""
    from translearn.run_record import record_failure

    record = record_failure(folder, err, write=distributed.is_rank_zero())  # one error.json per job
    message = record["message"]
    _failed.append((str(folder), message))
    if not is_user_error(err):  # a bug: its traceback too, as an uncaught exception would show it
        traceback.print_exception(err, file=sys.stderr)
    if "translearn.wandb_logging" in sys.modules:  # the job's W&B run: finished as failed, with the error
        sys.modules["translearn.wandb_logging"].fail_wandb_runs(record)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        print(f"{PROG}: error: job {folder}: {message}", file=sys.stderr)


def _is_user_error(err: BaseException) -> bool:
    # Before the task function, every Hydra error is about the command line or the config tree, and an OS
    # error is the run folder Hydra could not create.
    return is_user_error(err) or isinstance(err, HydraException | NotADirectoryError | FileExistsError)


def main() -> None:
    # under torchrun / srun: ranks other than 0 log to train_rank<r>.log in the job's one run folder
    debug = debug_requested()
    if not debug:  # let Hydra pass errors through to us instead of printing its own traceback and exiting 1
        os.environ["HYDRA_FULL_ERROR"] = os.environ[FORCED_FULL_ERROR_ENV] = "1"
    try:
        sys.argv = [sys.argv[0], *normalise_overrides(sys.argv[1:]), *distributed.rank_overrides()]
        with distributed.run_stamp_for_job():  # one run folder per job, shared by its ranks
            _hydra_main()
    except Exception as err:
        if debug or not _is_user_error(err):
            raise
        message = one_line(err)
        if isinstance(err, OSError):
            message = f"the run folder (hydra.run.dir / hydra.sweep.dir) cannot be made: {message}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    if _failed:
        if len(_jobs) == 1 and len(_failed) == 1:
            print(f"{PROG}: error: {_failed[0][1]}", file=sys.stderr)
        else:
            print(f"{PROG}: error: {len(_failed)} of {len(_jobs)} jobs failed (see error.json in each): "
                  f"{', '.join(folder for folder, _ in _failed)}", file=sys.stderr)
        internal = any(message.startswith(INTERNAL_PREFIX) for _, message in _failed)
        distributed.leave_failed_job(1 if internal else USER_ERROR_EXIT)  # torchrun: all ranks leave together
        sys.exit(1 if internal else USER_ERROR_EXIT)  # a bug in any job: 1, as an uncaught exception


if __name__ == "__main__":
    main()
