"""Sweeps: Optuna searches (failed trials never best), the joblib launcher, override rewriting for
plugin and user config groups, and one cache build when parallel processes want the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from translearn.checks import check_config
from translearn.cli.config import compose, normalise_overrides
from translearn.errors import ConfigError

BIN = Path(sys.executable).parent
TINY = ["data.dataset.num_users=200", "trainer.max_epochs=2", "logger=none"]


def _env(tmp: Path) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "TRANSLEARN_CACHE_DIR": str(tmp / "cache")}


def _train(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "translearn-train"), *args], cwd=tmp, env=_env(tmp), capture_output=True,
                          text=True, timeout=600)


def test_an_optuna_search_records_failed_trials_and_never_picks_them(tmp_path):
    search = tmp_path / "my_conf" / "hparams_search"
    search.mkdir(parents=True)
    (search / "tiny.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        defaults:
          - override /hydra/sweeper: optuna
        hydra:
          mode: MULTIRUN
          sweeper:
            direction: ${translearn_direction:${optimized_metric}}
            n_trials: 4
            n_jobs: 1
            max_failure_rate: 0.5
            sampler:
              seed: 3
              n_startup_trials: 4
            params:
              optimizer.lr: choice(0.01, 0.003, 1e30)
        """))
    sweep = tmp_path / "sweep"
    done = _train(["hparams_search=tiny", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", *TINY,
                   f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]  # the diverged trials are failed jobs
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    failed = [j for j in jobs if (j / "error.json").is_file()]
    finished = {j: json.loads((j / "metrics.json").read_text()) for j in jobs if (j / "metrics.json").is_file()}
    assert len(jobs) == 4 and failed and finished
    assert all("diverged" in json.loads((j / "error.json").read_text())["message"] for j in failed)
    assert "Return value must be float-castable" in done.stdout + done.stderr  # optuna: FAIL, not COMPLETE
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(m["val/target/ndcg@10"] for m in finished.values())
    assert best["best_params"]["optimizer.lr"] != 1e30


def test_packaged_searches_compose_with_the_monitor_direction(tmp_path, run_cli):
    done = run_cli("translearn-train", ["hparams_search=joint", "--cfg", "hydra"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    hydra = yaml.safe_load(done.stdout)["hydra"]
    assert hydra["mode"] == "MULTIRUN" and "OptunaSweeper" in hydra["sweeper"]["_target_"]
    assert hydra["sweeper"]["max_failure_rate"] > 0 and "strategy.lam" in hydra["sweeper"]["params"]
    assert OmegaConf.create({"a": "${translearn_direction:val/target/rmse}"}).a == "minimize"
    assert OmegaConf.create({"a": "${translearn_direction:val/target/ndcg@10}"}).a == "maximize"


def test_a_test_metric_is_never_optimised(tmp_path):
    with pytest.raises(ConfigError, match="optimized_metric"):
        check_config(compose(["optimized_metric=test/target/ndcg@10"], output_dir=tmp_path))


def test_joblib_runs_two_jobs_in_parallel_sharing_the_cores(tmp_path):
    sweep = tmp_path / "sweep"
    done = _train(["-m", "hydra.launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", *TINY,
                   f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    runs = [json.loads((sweep / str(j) / "metrics.json").read_text()) for j in (0, 1)]
    assert sorted(r["seed"] for r in runs) == [0, 1]
    assert all(r["torch_threads"] == max(1, (os.cpu_count() or 1) // 2) for r in runs)


def test_a_failed_joblib_job_counts_in_the_sweeps_exit_status(tmp_path):
    """Joblib jobs run in worker processes: their failures reach the sweep's exit status through error.json."""
    sweep = tmp_path / "sweep"
    done = _train(["-m", "hydra.launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.01,-1", *TINY,
                   f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    failed = [j for j in (0, 1) if (sweep / str(j) / "error.json").exists()]
    assert len(failed) == 1 and (sweep / str(1 - failed[0]) / "metrics.json").exists()
    assert "1 of 2 jobs failed" in done.stderr and str((sweep / str(failed[0])).resolve()) in done.stderr


def test_dotted_overrides_reach_plugin_and_user_groups(tmp_path):
    (tmp_path / "mine" / "kind").mkdir(parents=True)
    (tmp_path / "mine" / "kind" / "a.yaml").write_text("x: 1\n")
    user = f"hydra.searchpath=[file://{tmp_path}]"
    assert normalise_overrides(["hydra.launcher=joblib", "hydra.sweeper=optuna", "hydra.launcher.n_jobs=2",
                                "data.split=cold_start", "mine.kind=a", user]) == \
        ["hydra/launcher=joblib", "hydra/sweeper=optuna", "hydra.launcher.n_jobs=2", "data/split=cold_start",
         "mine/kind=a", user]
    assert normalise_overrides(["mine.kind=a"]) == ["mine.kind=a"]  # not on the search path: a plain key


BUILD = """
import sys
from translearn.data.prepare import prepare
from translearn.data.sources.synthetic import SyntheticSource
import logging
logging.basicConfig(level=logging.INFO, format="%(message)s")
prepare(SyntheticSource(num_users=30000), "target", ["source"], cache_dir=sys.argv[1])
"""


def test_parallel_processes_build_the_same_data_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(tmp_path / "cache")], env=_env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    built = sum("prepared data cached in" in log for log in logs)
    read = sum("prepared data read from cache" in log for log in logs)
    assert (built, read) == (1, 1), logs
