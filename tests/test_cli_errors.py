"""Every user error through the console scripts' entry points, in this process (``run_cli``): one line naming
the key or file, exit status 2, no traceback; translearn-train also writes error.json (and no metrics.json).
Run without HYDRA_FULL_ERROR. One real console-script start is test_cli.py's; here, one real start checks that
a closed pipe ends translearn-compare quietly (a property of the process, not of main())."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TABULAR_DOMAINS, one_line_error, tabular_books_movies

from translearn.errors import FORCED_FULL_ERROR_ENV, ConfigError

BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", FORCED_FULL_ERROR_ENV)}
ENV["WANDB_MODE"] = "offline"
TRAIN = "translearn-train"


@pytest.fixture
def train_fails(run_cli, tmp_path):
    """``train_fails(args, *needles)``: translearn-train into a fresh run folder; asserts the one-line error and
    that no metrics.json was written; returns error.json."""

    def fails(args: list[str], *needles: str) -> dict:
        run_dir = tmp_path / "run"
        one_line_error(run_cli(TRAIN, [*args, f"hydra.run.dir={run_dir}"], tmp_path), TRAIN, *needles)
        assert not (run_dir / "metrics.json").exists()
        record = json.loads((run_dir / "error.json").read_text())
        assert set(record) >= {"error", "message"} and all(n in record["message"] for n in needles)
        return record

    return fails


@pytest.fixture
def base(run_overrides):
    return [*run_overrides, "trainer.max_epochs=1", "logger=none"]


# ---------------------------------------------------------------- checks before training


def test_learning_rate_must_be_finite_and_not_negative(train_fails, base):
    record = train_fails([*base, "optimizer.lr=nan"], "optimizer.lr", "finite number >= 0")
    assert record["error"] == "ConfigError" and record["config_key"] == "optimizer.lr"


def test_max_epochs_must_be_a_whole_number(train_fails, base):
    train_fails([*base, "trainer.max_epochs=abc"], "trainer.max_epochs", "'abc'")


def test_monitor_that_is_never_logged_fails_before_training(train_fails, tmp_path, base):
    record = train_fails([*base, "evaluation.ks=[5]"], "monitor", "val/target/ndcg@10 is never logged",
                         "val/target/ndcg@5")
    assert record["config_key"] == "monitor"
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_cache_path_that_is_a_file(train_fails, tmp_path, base):
    (tmp_path / "taken").write_text("x")
    train_fails([*base, f"paths.cache_dir={tmp_path / 'taken'}"], "paths.cache_dir", "is a file")


def test_run_folder_that_is_a_file(run_cli, tmp_path, base):
    (tmp_path / "taken").write_text("x")
    done = run_cli(TRAIN, [*base, f"hydra.run.dir={tmp_path / 'taken'}"], tmp_path)
    one_line_error(done, TRAIN, "run folder", str(tmp_path / "taken"))


def test_missing_required_key_is_named(train_fails, tmp_path, base):
    (tmp_path / "movies.csv").write_text("uid,iid\n1,x\n")
    record = train_fails([*tabular_books_movies(tmp_path, base, "movies.csv"), "data.source_domains=[books]"],
                         "data.target_domain", "has no value")
    assert record["config_key"] == "data.target_domain"


def test_missing_column_is_one_line(train_fails, tmp_path, base):
    (tmp_path / "movies.csv").write_text("user,iid\n1,x\n")
    args = tabular_books_movies(tmp_path, base, "movies.csv", *TABULAR_DOMAINS)
    record = train_fails(args, "movies.csv, column 'uid'", "has columns: user, iid")
    assert record["error"] == "DataError" and record["file"].endswith("movies.csv")


def test_dat_file_without_a_separator_is_one_line(train_fails, tmp_path, base):
    (tmp_path / "movies.dat").write_text("1::x\n")
    args = tabular_books_movies(tmp_path, base, "movies.dat", *TABULAR_DOMAINS)
    train_fails(args, "movies.dat", "separator")


# ---------------------------------------------------------------- before the task function (Hydra composition)


def test_unknown_group_option_is_one_line_with_the_options(run_cli, tmp_path, base):
    done = run_cli(TRAIN, [*base, "strategy=nope", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    one_line_error(done, TRAIN, "strategy/nope", "joint, mapping")


def test_bad_override_syntax_is_one_line(run_cli, tmp_path, base):
    done = run_cli(TRAIN, [*base, "seed=[", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    one_line_error(done, TRAIN, "seed=[")


def test_debug_flag_lets_the_error_through(run_cli, tmp_path, base):
    # HYDRA_FULL_ERROR=1: the user error is raised out of the entry point (Python prints its traceback),
    # and error.json is still written.
    with pytest.raises(ConfigError, match="optimizer.lr"):
        run_cli(TRAIN, [*base, "optimizer.lr=nan", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                env={"HYDRA_FULL_ERROR": "1"})
    assert json.loads((tmp_path / "run" / "error.json").read_text())["config_key"] == "optimizer.lr"


def test_a_diverged_run_is_a_user_error(run_cli, monkeypatch, tmp_path, base):
    # Stands in for the NaN-loss check: the real train() replaced by one that raises DivergedError.
    from translearn.errors import DivergedError

    def diverge(cfg):
        raise DivergedError("loss_t is nan in epoch 0 (strategy.lam, optimizer.lr)")

    monkeypatch.setattr("translearn.train.train", diverge)
    run_dir = tmp_path / "run"
    done = run_cli(TRAIN, [*base, f"hydra.run.dir={run_dir}"], tmp_path)
    one_line_error(done, TRAIN, "loss_t is nan in epoch 0")
    assert json.loads((run_dir / "error.json").read_text())["error"] == "DivergedError"
    assert not (run_dir / "metrics.json").exists()


# ---------------------------------------------------------------- a sweep runs on past a failed job


def test_multirun_runs_the_other_jobs_and_exits_2_listing_the_failure(run_cli, tmp_path, base):
    sweep = tmp_path / "sweep"
    done = run_cli(TRAIN, ["-m", *base, "optimizer.lr=0.01,nan", f"hydra.sweep.dir={sweep}"], tmp_path)
    out = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, out
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "0" / "error.json").exists()
    assert (sweep / "1" / "error.json").is_file() and not (sweep / "1" / "metrics.json").exists()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith(f"{TRAIN}: error: job {sweep / '1'}: ") and "optimizer.lr" in lines[0]
    assert lines[1] == f"{TRAIN}: error: 1 of 2 jobs failed (see error.json in each): {sweep / '1'}"


# ---------------------------------------------------------------- checkpoints: corrupt or of another data set


def _truncated_copy(run: Path, dest: Path) -> Path:
    bad = dest / "bad.ckpt"
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    return bad


def test_resume_from_a_truncated_checkpoint(train_fails, tmp_path, trained_run):
    run, args = trained_run
    bad = _truncated_copy(run, tmp_path)
    record = train_fails([*args, f"resume={bad}"], str(bad), "not a readable checkpoint")
    assert record["error"] == "CheckpointError" and record["file"] == str(bad)


def test_resume_from_a_checkpoint_of_another_data_set(train_fails, trained_run):
    run, args = trained_run
    line = train_fails([*args, "data.dataset.num_users=300", f"resume={run}"], "last.ckpt",
                       "users, the data has")["message"]
    assert "another data set" in line


def test_eval_of_a_truncated_checkpoint(run_cli, tmp_path, trained_run):
    run, _ = trained_run
    bad = _truncated_copy(run, tmp_path)
    done = run_cli("translearn-eval", [str(run), "--checkpoint", str(bad)], tmp_path)
    one_line_error(done, "translearn-eval", str(bad), "not a readable checkpoint")


def test_eval_on_other_data_names_the_user_counts(run_cli, tmp_path, trained_run):
    run, _ = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    done = run_cli("translearn-eval", [str(copy), "data.dataset.num_users=300", "--checkpoint",
                                       str(copy / "checkpoints" / "last.ckpt")], tmp_path)
    line = one_line_error(done, "translearn-eval", "last.ckpt", "users, the data has")
    assert "another data set" in line


def test_eval_of_a_folder_that_is_not_a_run(run_cli, tmp_path):
    done = run_cli("translearn-eval", [str(tmp_path)], tmp_path)
    one_line_error(done, "translearn-eval", str(tmp_path), "not a run folder")


# ---------------------------------------------------------------- translearn-data, translearn-compare


def test_data_tool_user_errors_are_one_line(run_cli, tmp_path):
    done = run_cli("translearn-data", ["data=nope"], tmp_path)
    one_line_error(done, "translearn-data", "data/nope", "synthetic")
    (tmp_path / "movies.dat").write_text("1::x\n")
    (tmp_path / "books.csv").write_text("user_id,item_id\n1,a\n")
    done = run_cli("translearn-data", ["data=tabular", "data.target_domain=movies", "data.source_domains=[books]",
                                       f"paths.cache_dir={tmp_path / 'cache'}",
                                       f"+data.dataset.files={{books: {tmp_path / 'books.csv'}, "
                                       f"movies: {tmp_path / 'movies.dat'}}}"], tmp_path)
    one_line_error(done, "translearn-data", "movies.dat", "separator")


def test_compare_into_a_closed_pipe_exits_quietly(tmp_path):
    for i in range(3):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "metrics.json").write_text(json.dumps({"seed": i, "test/target/ndcg@10": 0.1 * i}))
    proc = subprocess.Popen([str(BIN / "translearn-compare"), str(tmp_path), "--json"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written (like `| head` that has had enough)
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and stderr == "", stderr
