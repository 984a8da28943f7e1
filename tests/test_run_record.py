"""A run proves where it came from (issue 24 §1): checkpoints carry the data key and config digest; eval,
recommend, features, probe and ``resume=`` compare them with the data as prepared now and refuse a
mismatch in one line naming both keys; ``resume=`` refuses changed result-altering settings and records
``resumed_from`` and what changed. Every case goes through the console script (``run_cli``)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_line_error
from omegaconf import OmegaConf

from translearn.cli.config import compose
from translearn.run_record import RECORD_KEY
from translearn.train import train

pytestmark = pytest.mark.usefixtures("fresh_root_logger")
# the tools' one error line; a library's warning lines on stderr may stand around it
own_line_error = partial(one_line_error, own_lines_only=True)


def _write_tables(folder: Path, seed: int, users: int = 120) -> None:
    rng = np.random.default_rng(seed)
    for name, items in (("books", 40), ("movies", 30)):
        rows = [f"{u},{name[0]}{i},{t}" for u in range(users)
                for t, i in enumerate(rng.choice(items, size=6, replace=False))]
        (folder / f"{name}.csv").write_text("user_id,item_id,t\n" + "\n".join(rows) + "\n")


def _save_config(overrides: list[str], run: Path) -> None:
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(compose(overrides, output_dir=run), run / ".hydra" / "config.yaml")


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    """A finished 1-epoch run on two CSV files (as translearn-train leaves it: .hydra/config.yaml beside it)."""
    root = tmp_path_factory.mktemp("tabular")
    _write_tables(root, seed=0)
    overrides = ["data=tabular", "data.target_domain=movies", "data.source_domains=[books]",
                 "data.dataset.order_column=t", "strategy=target_only", "data.batch_size=128",
                 "data.eval_batch_size=64", "trainer.max_epochs=1", "logger=none",
                 f"paths.cache_dir={root / 'cache'}", f"paths.log_dir={root / 'logs'}",
                 f"+data.dataset.files={{books: {root / 'books.csv'}, movies: {root / 'movies.csv'}}}"]
    run = root / "run"
    summary = train(compose(overrides, output_dir=run))
    _save_config(overrides, run)
    return root, run, summary


def test_checkpoints_and_metrics_carry_the_data_key_and_config_digest(tabular_run):
    _, run, summary = tabular_run
    record = torch.load(run / summary["best_checkpoint"], map_location="cpu", weights_only=True)[RECORD_KEY]
    assert record["data_manifest_key"] == summary["data_manifest_key"]
    assert record["data_split_key"] == summary["data_split_key"] and record["config_digest"] == summary["config_digest"]
    assert record["settings"]["seed"] == 0 and "paths" not in record["settings"]


def test_tools_refuse_a_run_whose_input_file_changed(tmp_path, tabular_run, run_cli):
    root, run, summary = tabular_run
    original = (root / "movies.csv").read_text()
    exported = run_cli("translearn-features", [run, "--out", tmp_path / "exported"])  # before the file changes
    assert exported.returncode == 0, exported.stderr[-3000:]
    try:
        (root / "movies.csv").write_text(original.replace("\n", "\n", 1) + "0,m29,99\n")  # one more row
        done = run_cli("translearn-eval", [run, "--out", tmp_path / "e.json"])
        line = own_line_error(done, "translearn-eval", summary["data_manifest_key"][:12], "data as prepared now",
                         "--allow-other-data")
        assert not (tmp_path / "e.json").exists(), line
        for prog, extra in (("translearn-recommend", ["--users", "0"]),
                            ("translearn-features", ["--out", tmp_path / "f"]),
                            ("translearn-probe", ["--attribute", "text", "--regex", "(.)"])):
            done = run_cli(prog, [run, *extra])
            own_line_error(done, prog, summary["data_manifest_key"][:12], "data as prepared now")
        done = run_cli("translearn-probe", [tmp_path / "exported", "--attribute", "text", "--regex", "(.)"])
        own_line_error(done, "translearn-probe", "exported from data", summary["data_manifest_key"][:12])
        # the explicit flag lets it through, and the output says so
        done = run_cli("translearn-eval", [run, "--allow-other-data", "--out", tmp_path / "e.json"])
        assert done.returncode == 0, done.stderr[-3000:]
        assert "warning" in done.stderr and "used anyway (--allow-other-data)" in done.stderr
        assert "used anyway" in json.loads((tmp_path / "e.json").read_text())["data_mismatch"]
    finally:
        (root / "movies.csv").write_text(original)
    done = run_cli("translearn-eval", [run, "--split", "test"])  # the data as trained on: accepted
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr[-3000:]


def test_eval_with_another_protocol_is_the_same_data(tabular_run, run_cli):
    # 22 negatives: 23 candidates, above k=20 (a cut-off at or above the candidates is refused)
    _, run, _ = tabular_run
    done = run_cli("translearn-eval", [run, "data/protocol=sampled", "data.protocol.num_negatives=22",
                                       "--split", "test"])
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr[-3000:]


@pytest.fixture(scope="module")
def synthetic_runs(tmp_path_factory):
    """Two finished 2-epoch runs on the same synthetic data split with data.seed 0 and 1: checkpoints whose
    tensors have the same shapes, trained on other rows."""
    root = tmp_path_factory.mktemp("synthetic")
    base = ["data.dataset.num_users=240", "data.dataset.num_items=[80,60]", "data.batch_size=128",
            "data.eval_batch_size=64", "trainer.max_epochs=2", "logger=none", "data.dataset.seed=0",
            f"paths.cache_dir={root / 'cache'}",
            f"paths.log_dir={root / 'logs'}"]
    runs = {}
    for seed in (0, 1):
        run = root / f"data_seed{seed}"
        train(compose([*base, f"data.seed={seed}"], output_dir=run))
        _save_config([*base, f"data.seed={seed}"], run)
        runs[seed] = run
    return base, runs


def test_a_checkpoint_of_other_data_with_the_same_shapes_is_refused(tmp_path, synthetic_runs, run_cli):
    base, runs = synthetic_runs
    other = runs[1] / "checkpoints" / "last.ckpt"
    done = run_cli("translearn-eval", [runs[0], "--checkpoint", other])
    own_line_error(done, "translearn-eval", str(other), "data as prepared now")
    done = run_cli("translearn-train", [*base, "data.seed=0", "trainer.max_epochs=3", f"resume={other}",
                                        f"hydra.run.dir={tmp_path / 'resumed'}"])
    line = own_line_error(done, "translearn-train", str(other), "data as prepared now")
    assert json.loads((tmp_path / "resumed" / "error.json").read_text())["error"] == "CheckpointError", line


def test_resume_with_a_changed_seed_is_refused(tmp_path, synthetic_runs, run_cli):
    base, runs = synthetic_runs
    done = run_cli("translearn-train", [*base, "seed=1", "trainer.max_epochs=3", f"resume={runs[0]}",
                                        f"hydra.run.dir={tmp_path / 'resumed'}"])
    own_line_error(done, "translearn-train", "config key 'seed'", "seed 0 -> 1", "alter results")
    assert not (tmp_path / "resumed" / "metrics.json").exists()


def test_resume_with_more_epochs_records_where_it_came_from(tmp_path, synthetic_runs, run_cli):
    base, runs = synthetic_runs
    done = run_cli("translearn-train", [*base, "trainer.max_epochs=3", f"resume={runs[0]}",
                                        f"hydra.run.dir={tmp_path / 'resumed'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert summary["resumed_from"] == str(runs[0] / "checkpoints" / "last.ckpt")
    assert summary["resume_changed"] == {"trainer.max_epochs": [2, 3]} and summary["epochs_run"] == 3


def test_resume_of_a_finished_run_with_fewer_epochs_is_one_line(tmp_path, synthetic_runs, run_cli):
    base, runs = synthetic_runs
    done = run_cli("translearn-train", [*base, "trainer.max_epochs=1", f"resume={runs[0]}",
                                        f"hydra.run.dir={tmp_path / 'resumed'}"])
    own_line_error(done, "translearn-train", "trainer.max_epochs", "finished 2 epochs")
