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
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

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


def _agent_store(env: Mapping[str, str]) -> Any:
    """A client of torchrun's agent store (``MASTER_ADDR:MASTER_PORT``), or None without one."""
    if env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true" or "MASTER_PORT" not in env:
        return None
    from torch.distributed import TCPStore

    return TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                    timeout=timedelta(seconds=STORE_TIMEOUT_S))


def _shared_through_store(env: Mapping[str, str], proposal: str) -> str:
    """The value every rank of a torchrun job agrees on: the first proposal to reach the launcher's store.

    torchrun's agent hosts a TCP store at ``MASTER_ADDR:MASTER_PORT`` that its workers join as clients
    (``TORCHELASTIC_USE_AGENT_STORE``); the process group later uses the same store under its own prefix."""
    store = _agent_store(env)
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


# ---- before training: every rank got there, or all stop ------------------------------------------------------
READY_TIMEOUT_S = float(os.environ.get("TRANSLEARN_READY_TIMEOUT_S", 1800))  # torch's own process-group default
_agreed: set[str] = set()  # the run folders whose agreement this process took part in
LEAVE_TIMEOUT_S = 60.0  # how long the ranks of a failed agreement wait for each other to leave
_failed_job: tuple[Any, str, int, int] | None = None  # (store, key prefix, rank, world) of a failed agreement


def agree_before_training(folder: str, failure: BaseException | None, env: Mapping[str, str] | None = None) -> None:
    """Under torchrun, agree once per job (run ``folder``) that every rank reached training: each rank posts ''
    (ready) or its error's line to the launcher's store and waits for all the others (posted, then read), so
    that a user error on one rank (a data path missing on its node, a bad override, a full disk) stops every
    rank at the same point with one line and exit status 2, instead of leaving the others waiting forever in
    the process group's start. Raises ``RankFailedError`` naming the failed rank on the ranks that were ready;
    does nothing for a failure after training started (then the ranks agree through collectives, e.g. the
    divergence check), outside torchrun, or without the launcher's store."""
    env = os.environ if env is None else env
    if folder in _agreed:
        return
    _agreed.add(folder)
    store = _agent_store(env) if launcher(env) == "torchrun" else None
    if store is None:
        return
    from translearn.errors import RankFailedError, one_line

    global _failed_job
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    prefix = f"translearn/ready/{env['TORCHELASTIC_RUN_ID']}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    line = "" if failure is None else (one_line(failure) or type(failure).__name__)
    store.set(f"{prefix}/{rank}", line)
    try:
        store.wait([f"{prefix}/{r}" for r in range(world)], timedelta(seconds=READY_TIMEOUT_S))
        posted = {r: store.get(f"{prefix}/{r}").decode() for r in range(world)}
    except Exception as err:  # a rank that never posted (killed, or still building after the timeout)
        if failure is not None:
            return
        raise RankFailedError(f"not every rank of {world} reached training within {READY_TIMEOUT_S:g} s "
                              f"(TRANSLEARN_READY_TIMEOUT_S): {err}") from None
    failed = [(r, text) for r, text in posted.items() if text and r != rank]
    if failure is not None or failed:
        _failed_job = (store, prefix, rank, world)
    if failure is None and failed:
        r, text = failed[0]
        raise RankFailedError(f"rank {r} of {world} failed before training: {text}")


def leave_failed_job(code: int) -> None:
    """After an agreement that found a failure (``agree_before_training``), with the error recorded and printed:
    wait until every rank got here, then leave at once (``os._exit``), all ranks together. One launcher hosts the
    store, and the others lose it when that one ends: leaving together lets each launcher see its process's
    exit status (2 for a user error) first. Nothing when no agreement failed."""
    if _failed_job is None:
        return
    store, prefix, rank, world = _failed_job
    with contextlib.suppress(Exception):
        store.set(f"{prefix}/leaving/{rank}", "1")
        store.wait([f"{prefix}/leaving/{r}" for r in range(world)], timedelta(seconds=LEAVE_TIMEOUT_S))
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


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
