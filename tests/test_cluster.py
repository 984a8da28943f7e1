"""Beyond one machine: ranks and run folders under torchrun and SLURM, the shared-file-system cache lock, and a
two-node run on this machine (two torchrun launchers, gloo on CPU).

The two tests that start real multi-process runs (``test_two_torchrun_nodes_*`` and
``test_slurm_tasks_*``) take a minute each and belong to the slow tier.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from translearn import distributed
from translearn.cache import shared_lock

BIN = Path(sys.executable).parent
# no HYDRA_FULL_ERROR here: user errors must print their one line and exit 2
ENV = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR" and not k.startswith(("SLURM_", "TORCHELASTIC"))}
ENV["WANDB_MODE"] = "offline"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


# ---- ranks and run folders from the launcher's environment (fast) -----------------------------------------------
SRUN = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
        "SLURM_LOCALID": "0", "SLURM_NODEID": "1"}


def test_slurm_variables_give_rank_and_one_folder_name_per_job_step():
    assert distributed.launcher(SRUN) == "slurm" and distributed.global_rank(SRUN) == 1
    assert distributed.job_run_stamp(SRUN) == "slurm-4242.0"
    assert distributed.job_run_stamp({**SRUN, "SLURM_PROCID": "0"}) == "slurm-4242.0"  # every task: the same
    assert distributed.rank_overrides(SRUN) == ["hydra.job.name=train_rank1", "hydra.output_subdir=null"]
    assert distributed.rank_overrides({**SRUN, "SLURM_PROCID": "0"}) == []
    one_task = {**SRUN, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}  # an sbatch job of one task: a plain run
    assert distributed.launcher(one_task) is None and distributed.job_run_stamp(one_task) is None
    batch_script = {k: v for k, v in SRUN.items() if k != "SLURM_STEP_ID"} | {"SLURM_PROCID": "0"}
    assert distributed.launcher(batch_script) is None  # the batch script itself, not under srun: a plain run
    assert distributed.job_run_stamp({**SRUN, "SLURM_STEP_ID": "3"}) == "slurm-4242.3"  # another srun, another folder


def test_torchrun_without_a_store_needs_a_rendezvous_id():
    env = {"TORCHELASTIC_RUN_ID": "job7", "RANK": "1", "WORLD_SIZE": "2"}
    assert distributed.launcher(env) == "torchrun" and distributed.global_rank(env) == 1
    assert distributed.job_run_stamp(env) == "torchrun-job7"
    from translearn.errors import ConfigError

    with pytest.raises(ConfigError, match="--rdzv-id"):
        distributed.job_run_stamp({**env, "TORCHELASTIC_RUN_ID": "none"})


def test_plain_and_lightning_children_keep_their_own_rules():
    assert distributed.launcher({}) is None and distributed.job_run_stamp({}) is None
    child = {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}  # Lightning's own DDP child
    assert distributed.launcher(child) is None and distributed.global_rank(child) == 1
    assert distributed.rank_overrides(child) == []  # Lightning passes it the folder and log name itself
    assert distributed.ranks_where(True) == [0] and distributed.ranks_where(False) == []


# ---- the cache lock that holds on a shared file system (fast) -------------------------------------------------
def test_shared_lock_excludes_and_is_removed_on_release(tmp_path):
    lock, inside, overlaps = tmp_path / ".lock-x", [], []

    def work() -> None:
        with shared_lock(lock, poll_s=0.01):
            inside.append(1)
            if len(inside) > 1:
                overlaps.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps and not lock.exists()


def test_a_stale_lock_is_taken_over(tmp_path):
    old = tmp_path / ".lock-old"  # left by a job on another machine that stopped refreshing it
    old.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t"}))
    os.utime(old, (time.time() - 600, time.time() - 600))
    with shared_lock(old, stale_s=60, poll_s=0.01):
        assert json.loads(old.read_text())["pid"] == os.getpid()
    dead = tmp_path / ".lock-dead"  # left by a killed process of this machine
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead.write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid, "token": "t"}))
    start = time.time()
    with shared_lock(dead, stale_s=60, poll_s=0.01):
        pass
    assert time.time() - start < 5 and not dead.exists()


def test_a_live_lock_is_waited_for_and_kept_fresh(tmp_path):
    lock, order = tmp_path / ".lock-live", []
    held = threading.Event()

    def holder() -> None:
        with shared_lock(lock, stale_s=0.4, poll_s=0.01):
            held.set()
            time.sleep(1.0)  # longer than stale_s: the refresh keeps it from looking stale
            order.append("holder")

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    with shared_lock(lock, stale_s=0.4, poll_s=0.01):
        order.append("waiter")
    t.join()
    assert order == ["holder", "waiter"]


# ---- real multi-process runs (slow tier) ------------------------------------------------------------------
def _overrides(tmp_path: Path) -> list[str]:
    return ["data.dataset.num_users=240", "data.dataset.num_items=[80,60]", "data.batch_size=128",
            "data.eval_batch_size=64", "trainer.max_epochs=2", f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.log_dir={tmp_path / 'logs'}", "trainer.enable_progress_bar=false"]


def _two_nodes(tmp_path: Path, node_args: tuple[list[str], list[str]]) -> list[subprocess.CompletedProcess]:
    """Two torchrun launchers on this machine as two nodes of one job (one process each, gloo on CPU)."""
    port = _free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    launchers = []
    for extra in node_args:
        cmd = [str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"localhost:{port}", str(BIN / "translearn-train"), *_overrides(tmp_path),
               "trainer=ddp", "trainer.devices=1", "+trainer.num_nodes=2", *extra]
        launchers.append(subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    done = []
    for p in launchers:
        out, _ = p.communicate(timeout=400)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, ""))
    return done


def test_two_torchrun_nodes_share_one_folder_match_evaluation_and_stop_together_on_nan(tmp_path):
    done = _two_nodes(tmp_path / "ok", ([], []))
    assert all(d.returncode == 0 for d in done), done[0].stdout[-3000:] + done[1].stdout[-3000:]
    runs = list((tmp_path / "ok" / "logs" / "runs").iterdir())
    assert len(runs) == 1, runs  # one run folder for the job, not one per rank
    run = runs[0]
    assert (run / "metrics.json").is_file() and (run / "train.log").is_file() and (run / "train_rank1.log").is_file()
    # the data was prepared once for the job: one rank built the cache entry under the lock, the other read it
    logs = (run / "train.log").read_text() + (run / "train_rank1.log").read_text()
    assert logs.count("prepared data cached in") == 1 and logs.count("prepared data read from cache") == 1, logs
    saved = json.loads((run / "metrics.json").read_text())
    # the same checkpoint evaluated by one process: each held-out row was ranked once across the two nodes
    single = subprocess.run([str(BIN / "translearn-eval"), str(run), "--out", str(tmp_path / "e.json")],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    again = json.loads((tmp_path / "e.json").read_text())
    for key in ["val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@20", "test/target/auc"]:
        assert again[key] == pytest.approx(saved[key], abs=1e-6), key

    # A learning rate that overflows on node 1 only: its loss turns NaN; both ranks stop, neither hangs.
    bad = _two_nodes(tmp_path / "nan", ([], ["optimizer.lr=1e38"]))
    for d in bad:
        assert d.returncode != 0 and "exitcode  : 2" in d.stdout, d.stdout[-3000:]
        assert "translearn-train: error: training diverged" in d.stdout
    runs = list((tmp_path / "nan" / "logs" / "runs").iterdir())
    assert len(runs) == 1 and not (runs[0] / "metrics.json").exists()
    error = json.loads((runs[0] / "error.json").read_text())
    assert error["error"] == "DivergedError" and "rank 1" in error["message"]


def test_two_torchrun_nodes_stop_together_on_a_user_error_of_one_rank(tmp_path):
    """A user error on one node before training (here a bad override given to node 1 only; on a cluster, e.g. a
    data path missing on one node): every rank prints one line and exits 2; none waits for the others forever."""
    done = _two_nodes(tmp_path, ([], ["data.num_negatives=-1"]))
    for d in done:
        assert d.returncode != 0 and "exitcode  : 2" in d.stdout, d.stdout[-3000:]
        errors = [line for line in d.stdout.splitlines() if line.startswith("translearn-train: error:")]
        assert len(errors) == 1 and "config key 'data.num_negatives' must be a whole number >= 0" in errors[0], errors
    assert sum("failed before training" in d.stdout for d in done) == 1  # the rank that was ready names the other
    runs = list((tmp_path / "logs" / "runs").iterdir())
    assert len(runs) == 1 and not (runs[0] / "metrics.json").exists()
    assert "config key 'data.num_negatives'" in json.loads((runs[0] / "error.json").read_text())["message"]


def test_slurm_tasks_share_one_folder_named_after_the_job(tmp_path):
    """Two processes with the variables ``srun --ntasks 2 --ntasks-per-node 1`` sets on two nodes; Lightning's
    SLURM environment makes them one job of two ranks."""
    port, procs = _free_port(), []
    for rank in (0, 1):
        env = {**ENV, "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_JOB_NAME": "translearn",
               "SLURM_NTASKS": "2", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": str(rank),
               "SLURM_LOCALID": "0", "SLURM_NODEID": str(rank), "SLURM_NODELIST": "localhost",
               "MASTER_ADDR": "localhost", "MASTER_PORT": str(port)}
        cmd = [str(BIN / "translearn-train"), *_overrides(tmp_path), "trainer=ddp", "trainer.devices=1",
               "+trainer.num_nodes=2"]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    runs = list((tmp_path / "logs" / "runs").iterdir())
    assert [r.name for r in runs] == ["slurm-4242.0"]
    assert (runs[0] / "metrics.json").is_file() and (runs[0] / "train_rank1.log").is_file()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (runs[0] / "train_rank1.log").read_text()


# ---- GPU trainers: mixed precision and pinned memory, chosen in config (fast) ---------------------------------
@pytest.mark.parametrize("trainer, precision, pinned", [("cpu", None, False), ("gpu", "bf16-mixed", True),
                                                         ("ddp_gpu", "bf16-mixed", True), ("ddp", None, False)])
def test_gpu_trainers_select_bf16_autocast_and_pinned_memory(trainer, precision, pinned, tmp_path):
    from translearn.build import loader_settings
    from translearn.cli.config import compose

    cfg = compose([f"trainer={trainer}"], output_dir=tmp_path)
    assert cfg.trainer.get("precision") == precision
    assert loader_settings(cfg) == {"num_workers": 0, "pin_memory": pinned}
    cfg = compose([f"trainer={trainer}", "loader.pin_memory=false", "loader.num_workers=2"], output_dir=tmp_path)
    assert loader_settings(cfg) == {"num_workers": 2, "pin_memory": False}
