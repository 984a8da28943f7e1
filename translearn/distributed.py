"""Ranks and jobs beyond one process: which rank this is, one run folder per job, and flags agreed by all ranks.

Three ways a run has several processes:
- Lightning's own launcher (``trainer=ddp trainer.devices=N`` on one machine): it starts the other ranks
  itself and hands them the run folder (``hydra.run.dir``); nothing to do here.
- ``torchrun`` (one launcher per node): every process runs the whole command line; ``RANK``,
  ``WORLD_SIZE`` and ``TORCHELASTIC_RUN_ID`` are set. The ranks agree on one run folder name through the
  launcher's key-value store (the first rank to ask picks its timestamp; the others read it).
- SLURM ``srun`` (one task per GPU): ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_JOB_ID`` are set; the run
  folder is named after the job (and step), which every task knows without talking to the others.

The run folder name is used by ``conf/hydra/default.yaml`` through the ``translearn_run_stamp`` resolver.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

from omegaconf import OmegaConf

_run_stamp: str | None = None  # set by ``job_run_stamp`` for the command being run, else the time decides
STORE_TIMEOUT_S = 300


def launcher(env: Mapping[str, str] | None = None) -> str | None:
    """``"torchrun"`` or ``"slurm"`` when this process is one of several ranks that a cluster launcher
    started, each running the whole command; None for one process or Lightning's own DDP children."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env and "RANK" in env and int(env.get("WORLD_SIZE", "1")) > 1:
        return "torchrun"
    # srun sets a numeric step id; the batch script itself (no srun) is not one rank of several
    if ("SLURM_PROCID" in env and "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1
            and env.get("SLURM_STEP_ID", "").isdigit()):
        return "slurm"
    return None


def global_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's rank as the launcher set it in the environment (0 when there is none); valid before
    ``torch.distributed`` starts. Lightning's own DDP children read as their ``LOCAL_RANK``."""
    env = os.environ if env is None else env
    kind = launcher(env)
    if kind == "torchrun":
        return int(env["RANK"])
    if kind == "slurm":
        return int(env["SLURM_PROCID"])
    return int(env.get("RANK", env.get("LOCAL_RANK", "0")) or 0)


def is_rank_zero(env: Mapping[str, str] | None = None) -> bool:
    return global_rank(env) == 0


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")


def _shared_through_store(env: Mapping[str, str], proposal: str) -> str:
    """The value every rank of a torchrun job agrees on: the first proposal to reach the launcher's store.

    torchrun's agent hosts a TCP store at ``MASTER_ADDR:MASTER_PORT`` that its workers join as clients
    (``TORCHELASTIC_USE_AGENT_STORE``); the process group later uses the same store under its own prefix."""
    from torch.distributed import TCPStore

    store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                     timeout=timedelta(seconds=STORE_TIMEOUT_S))
    key = f"translearn/run_stamp/{env['TORCHELASTIC_RUN_ID']}"
    return store.compare_set(key, "", proposal).decode()


def job_run_stamp(env: Mapping[str, str] | None = None) -> str | None:
    """The run folder name all ranks of this job share, or None outside a cluster launcher (then each run
    is named after its start time, as before).

    SLURM: ``slurm-<job id>.<step id>`` (each task knows it; the tasks' clocks may differ, so no time; each
    ``srun`` of a job is a step of its own).
    torchrun: the start time of the first rank to ask, agreed through the launcher's store; without that
    store, ``torchrun-<rdzv id>``."""
    env = os.environ if env is None else env
    kind = launcher(env)
    if kind == "slurm":
        return f"slurm-{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    if kind == "torchrun":
        if env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true" and "MASTER_PORT" in env:
            return _shared_through_store(env, _now())
        run_id = env["TORCHELASTIC_RUN_ID"]
        if run_id in ("", "none"):
            from translearn.errors import ConfigError

            raise ConfigError("under torchrun without the launcher's store the ranks cannot agree on one run "
                              "folder: give torchrun --rdzv-id <job id> (or hydra.run.dir=<folder>)")
        return f"torchrun-{run_id}"
    return None


@contextlib.contextmanager
def run_stamp_for_job(env: Mapping[str, str] | None = None) -> Iterator[str | None]:
    """Within the block, ``${translearn_run_stamp:...}`` gives this job's shared stamp (if it has one)."""
    global _run_stamp
    previous, _run_stamp = _run_stamp, job_run_stamp(env)
    try:
        yield _run_stamp
    finally:
        _run_stamp = previous


def rank_overrides(env: Mapping[str, str] | None = None) -> list[str]:
    """Hydra overrides for a rank other than 0 of a cluster launcher: its log file is ``train_rank<r>.log``
    in the shared folder and it writes no second copy of ``.hydra/`` (the same as Lightning's own DDP
    children do)."""
    env = os.environ if env is None else env
    if launcher(env) is None or global_rank(env) == 0:
        return []
    return [f"hydra.job.name=train_rank{global_rank(env)}", "hydra.output_subdir=null"]


def _resolve_stamp(default: str) -> str:
    return _run_stamp if _run_stamp is not None else default


if not OmegaConf.has_resolver("translearn_run_stamp"):
    OmegaConf.register_new_resolver("translearn_run_stamp", _resolve_stamp)


# ---- after torch.distributed has started --------------------------------------------------------------
def ranks_where(flag: bool, device: object = "cpu") -> list[int]:
    """The ranks on which ``flag`` is true, agreed by every rank (one all-reduce); ``[0]`` / ``[]`` in a single
    process. Every rank must call it at the same point, as for any collective."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [0] if flag else []
    votes = torch.zeros(dist.get_world_size(), dtype=torch.int32, device=device)
    votes[dist.get_rank()] = int(flag)
    dist.all_reduce(votes)
    return [int(r) for r in torch.nonzero(votes).flatten().tolist()]
