"""The real entry points, end to end on small data: train (in process, through the console scripts' entry points
in process, and once as a real console script), resume, multirun, evaluate, data, loggers, and CPU DDP (slow tier)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from translearn.build import build_data
from translearn.cli.config import compose
from translearn.train import train

BIN = Path(sys.executable).parent
ENV = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def test_default_run_writes_metrics_checkpoints_and_logs(tmp_path, run_overrides):
    out = tmp_path / "run"
    summary = train(compose(run_overrides, output_dir=out))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == summary
    _check_trained_ranking(saved, compose(run_overrides, output_dir=out))
    assert saved["strategy"] == "Joint" and saved["seed"] == 0 and saved["wall_time_s"] > 0
    assert len(saved["config_digest"]) == 64 and len(saved["data_manifest_key"]) == 64
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / saved["best_checkpoint"]).is_file()
    assert saved["best_checkpoint"].startswith("checkpoints/best-epoch")  # relative to the run folder
    assert (out / "csv" / "metrics.csv").read_text().count("val/target/ndcg@10") == 1  # header
    assert not list(out.rglob(".tmp-*"))  # atomic writes leave no temp files


def _random_hr10(cfg) -> float:
    """Expected test HR@10 of a random ranking: per test user 10 / (items left after masking the user's
    training and validation items), averaged by hand from the prepared data."""
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    known = np.zeros((prepared.num_users, prepared.num_items(prepared.target)), dtype=bool)
    for part in (prepared.train(prepared.target), prepared.held_out("valid")):
        known[part.users, part.items] = True
    test = prepared.held_out("test")
    candidates = known.shape[1] - known[test.users].sum(axis=1) + known[test.users, test.items]
    return float(np.mean(np.minimum(1.0, 10.0 / candidates)))


def _check_trained_ranking(m: dict, cfg) -> None:
    """Test metrics of a trained leave-one-out run, checked so that a broken run fails: a NaN-scored model
    (every metric 1.0), an untrained one (random ranking) or mixed-up metric keys."""
    t = {k.removeprefix("test/target/"): v for k, v in m.items() if k.startswith("test/target/")}
    assert all(math.isfinite(v) for v in t.values()), t
    assert 0.55 < t["auc"] < 0.99  # random ranking gives 0.5; NaN scores that rank first give 1.0
    assert t["hr@10"] > 1.5 * _random_hr10(cfg)
    # One held-out item per user: recall is HR, precision is HR / k, and MRR < NDCG < HR unless every hit
    # is at rank 1 (as when every score is NaN).
    assert t["recall@10"] == pytest.approx(t["hr@10"]) and t["precision@10"] == pytest.approx(t["hr@10"] / 10)
    assert t["mrr@10"] < t["ndcg@10"] < t["hr@10"] < t["hr@20"] < 1.0
    assert m["val/target/ndcg@10"] > 0.0


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path, run_overrides):
    runs = [train(compose([*run_overrides, f"seed={s}", "trainer.max_epochs=1", "logger=none"],
                          output_dir=tmp_path / f"r{i}"))
            for i, s in enumerate((3, 3, 4))]
    keys = [k for k in runs[0] if k.startswith(("val/", "test/"))]
    assert all(runs[0][k] == runs[1][k] for k in keys)
    assert any(runs[0][k] != runs[2][k] for k in keys)


def test_resume_continues_from_last_checkpoint(tmp_path, run_overrides):
    first = tmp_path / "first"
    train(compose([*run_overrides, "trainer.max_epochs=1"], output_dir=first))
    resumed = train(compose([*run_overrides, "trainer.max_epochs=3", f"resume={first}"], output_dir=tmp_path / "b"))
    assert resumed["epochs_run"] == 3
    with pytest.raises(FileNotFoundError, match="resume"):
        train(compose([*run_overrides, f"resume={tmp_path / 'nowhere'}"], output_dir=tmp_path / "c"))


def test_target_only_with_ncf_tensorboard_and_offline_wandb(tmp_path, run_overrides):
    from translearn.wandb_runs import read_offline_run

    out = tmp_path / "run"
    summary = train(compose([*run_overrides, "strategy=target_only", "model=ncf", "logger=many"], output_dir=out))
    assert summary["strategy"] == "TargetOnly" and summary["epochs_run"] == 2
    # Each logger got the per-epoch validation metric, the same values as the CSV logger's.
    header, *rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("val/target/ndcg@10")
    csv_values = [float(r.split(",")[column]) for r in rows if r.split(",")[column]]
    assert len(csv_values) >= 2  # one per epoch (and the best checkpoint's final validation)
    # TensorBoard's writer may still hold its events in memory here: its files exist (values not compared).
    assert list((out / "tensorboard").glob("events.out.tfevents*"))
    (wandb_dir,) = (out / "wandb").glob("offline-run-*")
    run = read_offline_run(wandb_dir)
    # W&B's service process may still be writing the file when finish() returns (seen on a loaded machine:
    # the file held the run record but no history yet): read again until the exit record is in it.
    deadline = time.monotonic() + 60
    while run.exit_code is None and time.monotonic() < deadline:
        time.sleep(0.2)
        run = read_offline_run(wandb_dir)
    assert run.exit_code == 0, "the offline W&B file has no exit record 60 s after the run finished"
    logged = [row["val/target/ndcg@10"] for row in run.history if "val/target/ndcg@10" in row]
    assert len(logged) >= summary["epochs_run"] and logged == pytest.approx(csv_values[:len(logged)], abs=1e-6)
    assert run.summary["test/target/ndcg@10"] == pytest.approx(summary["test/target/ndcg@10"], abs=1e-6)


def test_console_script_smoke(tmp_path, run_overrides):
    # The one real console-script start of translearn-train (a fresh interpreter, the installed entry point);
    # the other CLI tests call the same entry points in this process (run_cli).
    run_dir = tmp_path / "cli-run"
    done = _run([str(BIN / "translearn-train"), *run_overrides, "trainer.max_epochs=1", "logger=none",
                 f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["epochs_run"] == 1 and (run_dir / ".hydra" / "config.yaml").is_file()
    table = [line.split() for line in done.stdout.splitlines() if line.startswith("ndcg@10 ")]
    assert table and float(table[0][2]) == pytest.approx(saved["test/target/ndcg@10"], abs=1e-4)  # val, test


def test_eval_and_data_tools_agree_with_the_run(tmp_path, run_cli, trained_run):
    run_dir, args = trained_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    evaluated = run_cli("translearn-eval", [str(run_dir), "--out", str(tmp_path / "e.json")], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "e.json").read_text())
    for key in ("val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@20", "test/target/auc"):
        assert again[key] == pytest.approx(saved[key], abs=1e-6), key
    data = run_cli("translearn-data", [*args[:2], args[5], "--json"], tmp_path)
    assert data.returncode == 0, data.stderr[-3000:]
    manifest = json.loads(data.stdout)
    assert manifest["key"] == saved["data_manifest_key"]  # same data, same cache entry
    assert any(line.startswith("split(LeaveOneOut)") for line in manifest["report"])


@pytest.mark.parametrize(("script", "needle"), [("translearn-train", "strategy: "), ("translearn-eval", "--checkpoint"),
                                                ("translearn-data", "usage")])
def test_help(script, needle, tmp_path, run_cli):
    done = run_cli(script, ["--help"], tmp_path)
    assert done.returncode == 0 and needle in done.stdout, done.stdout[-2000:]


def test_multirun_sweeps_strategies_and_seeds(tmp_path, run_overrides, run_cli):
    sweep = tmp_path / "sweep"
    done = run_cli("translearn-train", ["-m", *run_overrides, "trainer.max_epochs=1", "logger=none",
                                        "strategy=target_only,joint", "seed=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {(m["strategy"], m["seed"]): m for m in (json.loads(p.read_text()) for p in sweep.glob("*/metrics.json"))}
    assert sorted(runs) == [("Joint", 0), ("Joint", 1), ("TargetOnly", 0), ("TargetOnly", 1)]
    # Each job trained its own model: the seeds differ, and every job has finite test metrics of one data set.
    for strategy in ("Joint", "TargetOnly"):
        assert runs[strategy, 0]["test/target/ndcg@10"] != runs[strategy, 1]["test/target/ndcg@10"]
    assert len({m["data_manifest_key"] for m in runs.values()}) == 1
    assert all(0.0 < m["test/target/auc"] < 1.0 for m in runs.values())


def test_dotted_override_selects_a_nested_group(tmp_path, run_overrides):
    cfg = compose([*run_overrides, "data.split=cold_start", "data.split.holdout_fraction=0.5"], output_dir=tmp_path)
    assert cfg.data.split._target_.endswith("ColdStartUsers") and cfg.data.split.holdout_fraction == 0.5
    summary = train(cfg)
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    test_users = np.unique(prepared.held_out("test").users)
    assert not prepared.users_with_training_data([prepared.target])[test_users].any()  # test users are cold
    t = {k.removeprefix("test/target/"): v for k, v in summary.items() if k.startswith("test/target/")}
    assert 0.55 < t["auc"] < 0.99  # ranks cold users' items better than chance, and not NaN-perfect
    # Cold users hold several test items: a hit on one of them is not all of them.
    assert 0.0 < t["recall@10"] < t["hr@10"] <= 1.0 and t["mrr@10"] < t["hr@10"]


@pytest.mark.parametrize("strategy", ["joint", "fusion", "sasrec", "bitgcf"])
def test_ddp_on_two_cpu_processes_matches_single_process_evaluation(strategy, tmp_path, run_overrides):
    run_dir = tmp_path / "ddp"
    stage = ["strategy.stage.max_epochs=2"] if strategy == "fusion" else []
    if strategy == "sasrec":  # a sequence model: per-rank sequence batches and history queries
        strategy, stage = "joint", ["model=sasrec", "model.embedding_dim=16", "model.inner_size=32",
                                    "data.dataset.sequential=0.9"]
    if strategy == "bitgcf":  # a graph model: its sparse adjacency buffers are built on each rank, not broadcast
        strategy, stage = "joint", ["model=bitgcf"]
    sources = [] if strategy == "fusion" else ["evaluation.domains=[target,source]"]  # joint ranks the source too
    done = _run([str(BIN / "translearn-train"), *run_overrides, f"strategy={strategy}", *stage, *sources,
                 "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((run_dir / "metrics.json").read_text())
    single = _run([str(BIN / "translearn-eval"), str(run_dir), "--out", str(tmp_path / "e.json")], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    again = json.loads((tmp_path / "e.json").read_text())
    # Each held-out row is evaluated once across the two ranks, so the reduced metrics are exact.
    keys = ["val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@20", "test/target/auc"]
    if sources:
        keys += ["val/source/ndcg@10", "test/source/ndcg@10"]
    for key in keys:
        assert again[key] == pytest.approx(saved[key], abs=1e-6), key


def test_ddp_on_two_cpu_processes_with_lazy_adam_learns_like_one_process(tmp_path, run_overrides):
    """optimizer=lazy_adam under DDP: sparse id-table gradients reduced across the ranks (one model on both:
    its metrics equal translearn-eval of the saved weights) and a model as good as the one-process run's."""
    common = [*run_overrides, "strategy=target_only", "optimizer=lazy_adam", "optimizer.lr=0.01",
              "trainer.max_epochs=5", "logger=none"]
    runs = {}
    for name, extra in (("one", []), ("ddp", ["trainer=ddp", "trainer.devices=2"])):
        done = _run([str(BIN / "translearn-train"), *common, *extra, f"hydra.run.dir={tmp_path / name}"], tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    single = _run([str(BIN / "translearn-eval"), str(tmp_path / "ddp"), "--out", str(tmp_path / "e.json")], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    again = json.loads((tmp_path / "e.json").read_text())
    for key in ["val/target/ndcg@10", "test/target/ndcg@10", "test/target/auc"]:
        assert again[key] == pytest.approx(runs["ddp"][key], abs=1e-6), key  # the ranks held one model
    # measured: test NDCG@10 0.406 (one process) and 0.405 (two processes)
    assert runs["one"]["test/target/ndcg@10"] > 0.3
    assert runs["ddp"]["test/target/ndcg@10"] == pytest.approx(runs["one"]["test/target/ndcg@10"], abs=0.05)


def test_step_loss_reaches_the_logger_and_files_are_readable(tmp_path, run_overrides):
    out = tmp_path / "run"
    train(compose([*run_overrides, "trainer.log_every_n_steps=2"], output_dir=out))
    header, *rows = (out / "csv" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("train/loss_step")
    assert sum(1 for r in rows if r.split(",")[column]) >= 2
    assert (out / "metrics.json").stat().st_mode & 0o044  # group/other may read results (umask permitting)


def test_eval_overrides_are_typed(trained_run):
    from translearn.cli.evaluate import load_run_config

    run_dir, _ = trained_run
    cfg = load_run_config(run_dir, ["data/protocol=sampled", "data.protocol.num_negatives=50"])
    assert cfg.data.protocol.num_negatives == 50 and isinstance(cfg.data.protocol.num_negatives, int)


def test_lr_scheduler_from_config(tmp_path, run_overrides):
    cfg = compose([*run_overrides, "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5",
                   "strategy=target_only", "optimizer.lr=0.01"], output_dir=tmp_path)
    from translearn.build import build_data, build_model, build_strategy

    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    out = strategy.configure_optimizers()
    optimizer, scheduler = out["optimizer"], out["lr_scheduler"]["scheduler"]
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.005  # 0.01 halved after one epoch
    assert train(cfg)["epochs_run"] == 2
