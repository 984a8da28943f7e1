"""Every failure leaves a record, every user error is one line (issue 24 §3), through the console scripts
(``run_cli``, in this process).

We run as root here, so a read-only or locked folder cannot be made with chmod: those cases monkeypatch
``Path.mkdir`` / the file reader to raise the ``PermissionError`` the operating system would raise.
"""

from __future__ import annotations

import argparse
import errno
import json
import pathlib
from pathlib import Path

import pytest
import torch
from helpers import TABULAR_DOMAINS, one_line_error, tabular_books_movies

pytestmark = pytest.mark.usefixtures("fresh_root_logger")



@pytest.fixture
def base(run_overrides):
    return [*run_overrides, "trainer.max_epochs=1", "logger=none"]


def _train_fails(run_cli, args: list[str], run_dir: Path, *needles: str) -> dict:
    done = run_cli("translearn-train", [*args, f"hydra.run.dir={run_dir}"])
    one_line_error(done, "translearn-train", *needles)
    assert not (run_dir / "metrics.json").exists()
    record = json.loads((run_dir / "error.json").read_text())
    assert all(n in record["message"] for n in needles), record
    return record


def _locked(monkeypatch, folder: Path) -> None:
    """Stands in for a read-only or locked ``folder``: making anything at or under it is refused."""
    mkdir = pathlib.Path.mkdir

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(folder)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)


# ---------------------------------------------------------------- every failed job writes error.json


def test_an_internal_error_leaves_error_json_and_its_traceback(tmp_path, base, run_cli, monkeypatch):
    def bug(cfg):
        raise KeyError("a bug")

    monkeypatch.setattr("translearn.train.train", bug)
    run_dir = tmp_path / "run"
    done = run_cli("translearn-train", [*base, f"hydra.run.dir={run_dir}"])
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" in done.stderr and "KeyError" in done.stderr  # a bug keeps its traceback
    assert done.stderr.strip().splitlines()[-1].startswith("translearn-train: error: internal error (KeyError)")
    record = json.loads((run_dir / "error.json").read_text())
    assert record["error"] == "KeyError" and record["message"].startswith("internal error")
    assert "a bug" in (run_dir / record["traceback"]).read_text()


def test_a_sweep_with_an_internal_error_runs_on_and_prints_its_summary(tmp_path, base, run_cli, monkeypatch):
    def bug_for_seed_1(cfg):
        if cfg.seed == 1:
            raise RuntimeError("a bug")
        return {}

    monkeypatch.setattr("translearn.train.train", bug_for_seed_1)
    sweep = tmp_path / "sweep"
    done = run_cli("translearn-train", ["-m", *base, "seed=0,1,2", f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 1, done.stderr[-3000:]
    assert (sweep / "1" / "error.json").is_file() and (sweep / "1" / "traceback.txt").is_file()
    assert done.stderr.strip().splitlines()[-1] == (f"translearn-train: error: 1 of 3 jobs failed (see error.json in "
                                                    f"each): {sweep / '1'}")


def test_a_sweep_over_a_bad_batch_size_prints_its_summary(tmp_path, base, run_cli):
    sweep = tmp_path / "sweep"
    done = run_cli("translearn-train", ["-m", *base, "data.batch_size=0,512", f"hydra.sweep.dir={sweep}"])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert json.loads((sweep / "0" / "error.json").read_text())["config_key"] == "data.batch_size"
    assert (sweep / "1" / "metrics.json").is_file()
    assert done.stderr.strip().splitlines()[-1].startswith("translearn-train: error: 1 of 2 jobs failed")


# ---------------------------------------------------------------- out-of-range values


@pytest.mark.parametrize(("overrides", "key", "expected"), [
    (["data.batch_size=0"], "data.batch_size", "whole number >= 1, got 0"),
    (["model.embedding_dim=0"], "model.embedding_dim", "whole number >= 1, got 0"),
    (["model=ncf", "model.dropout=1.5"], "model.dropout", ">= 0 and < 1, got 1.5"),
    (["model=sasrec", "strategy=target_only", "model.dropout=1.5"], "model.dropout", ">= 0 and < 1, got 1.5"),
    (["data.num_negatives=-1"], "data.num_negatives", "whole number >= 0, got -1"),
    (["seed=abc"], "seed", "whole number, got 'abc'"),
    (["data.dataset.num_users=0"], "data.dataset.num_users", "whole number >= 1, got 0"),
    (["model=sasrec", "strategy=target_only", "model.history_scope=bogus"], "model.history_scope",
     "one of target, all, got 'bogus'"),
])
def test_out_of_range_values_are_one_line(tmp_path, base, run_cli, overrides, key, expected):
    record = _train_fails(run_cli, [*base, *overrides], tmp_path / "run", f"config key {key!r}", expected)
    assert record["error"] == "ConfigError" and record["config_key"] == key


def test_preprocessing_that_empties_a_source_domain(tmp_path, base, run_cli):
    kcore = "+data.preprocess.kcore={_target_: translearn.data.KCore, user_k: 1000, domains: [source]}"
    _train_fails(run_cli, [*base, kcore], tmp_path / "run", "left no interactions in the source domain 'source'",
                 "KCore")


# ---------------------------------------------------------------- data files


def test_a_data_file_that_cannot_be_read(tmp_path, base, run_cli, monkeypatch):
    (tmp_path / "movies.csv").write_text("uid,iid\n1,x\n")
    real = open

    def denied(file, *args, **kwargs):  # stands in for a file without read permission
        if str(file).endswith("movies.csv"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    args = tabular_books_movies(tmp_path, base, "movies.csv", *TABULAR_DOMAINS)
    record = _train_fails(run_cli, args, tmp_path / "run", "movies.csv",
                          "cannot read the file: Permission denied")
    assert record["error"] == "DataError"


def test_a_data_path_that_is_a_folder(tmp_path, base, run_cli):
    (tmp_path / "movies").mkdir()
    args = tabular_books_movies(tmp_path, base, "movies", *TABULAR_DOMAINS)
    _train_fails(run_cli, args, tmp_path / "run", "movies: is a folder, not a file")


def test_a_dat_file_names_the_key_to_add(tmp_path, base, run_cli):
    (tmp_path / "movies.dat").write_text("1::x\n")
    args = tabular_books_movies(tmp_path, base, "movies.dat", *TABULAR_DOMAINS)
    _train_fails(run_cli, args, tmp_path / "run", "movies.dat",
                 "cannot tell the separator from the extension '.dat'", "+data.dataset.sep=tab")


def test_an_infinite_rating_is_refused_at_load_time(tmp_path, base, run_cli):
    (tmp_path / "movies.csv").write_text("uid,iid,r\n1,x,4\n1,y,1e400\n")
    args = tabular_books_movies(tmp_path, base, "movies.csv", *TABULAR_DOMAINS, "data.dataset.rating_column=r")
    (tmp_path / "books.csv").write_text("uid,iid,r\n1,a,5\n1,b,4\n2,a,3\n")
    record = _train_fails(run_cli, args, tmp_path / "run", "movies.csv, line 3, column 'r'",
                          "'1e400' is not a finite number")
    assert record["error"] == "DataError"


# ---------------------------------------------------------------- folders that cannot be written


def test_a_read_only_run_folder(tmp_path, base, run_cli, monkeypatch):
    _locked(monkeypatch, tmp_path / "locked")
    done = run_cli("translearn-train", [*base, f"hydra.run.dir={tmp_path / 'locked' / 'run'}"])
    one_line_error(done, "translearn-train", "run folder", "Permission denied")


def test_a_read_only_cache_folder(tmp_path, base, run_cli, monkeypatch):
    _locked(monkeypatch, tmp_path / "locked")
    _train_fails(run_cli, [*base, f"paths.cache_dir={tmp_path / 'locked'}"], tmp_path / "run",
                 "config key 'paths.cache_dir'", "Permission denied")


def test_a_cache_entry_replaced_by_a_file_is_rebuilt(tmp_path, base, run_cli):
    cache = tmp_path / "cache"
    done = run_cli("translearn-data", [*base[:4], f"paths.cache_dir={cache}"])
    assert done.returncode == 0, done.stderr[-3000:]
    (entry,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    import shutil

    shutil.rmtree(entry)
    entry.write_text("not a folder")
    done = run_cli("translearn-train", [*base, "trainer.max_epochs=0", f"paths.cache_dir={cache}",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert entry.is_dir() and (tmp_path / "run" / "metrics.json").is_file()


# ---------------------------------------------------------------- run folders, checkpoints, compare


@pytest.mark.parametrize("text", ["data: [unclosed\n", ""])
def test_a_run_with_a_broken_or_empty_saved_config(tmp_path, run_cli, text):
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text(text)
    done = run_cli("translearn-eval", [tmp_path / "run"])
    one_line_error(done, "translearn-eval", str(tmp_path / "run" / ".hydra" / "config.yaml"),
              "broken YAML" if text else "not a run config")


def test_a_checkpoint_with_foreign_objects_gives_no_unsafe_advice(tmp_path, base, run_cli):
    bad = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "extra": argparse.Namespace(a=1)}, bad)
    record = _train_fails(run_cli, [*base, f"resume={bad}"], tmp_path / "run", str(bad), "not a readable checkpoint")
    assert "weights_only" not in record["message"] and "objects other than weights" in record["message"]


def _metrics_folder(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(text)
    return folder


def test_compare_over_a_nan_metric_or_a_truncated_metrics_json(tmp_path, run_cli):
    good = _metrics_folder(tmp_path / "good", json.dumps({"seed": 0, "test/target/ndcg@10": 0.1}))
    nan = _metrics_folder(tmp_path / "nan", '{"seed": 1, "test/target/ndcg@10": NaN}')
    one_line_error(run_cli("translearn-compare", [good, nan]), "translearn-compare", str(nan / "metrics.json"),
              "test/target/ndcg@10 is nan")
    cut = _metrics_folder(tmp_path / "cut", '{"seed": 1, "test/target/nd')
    one_line_error(run_cli("translearn-compare", [good, cut]), "translearn-compare", str(cut / "metrics.json"),
              "not readable JSON")


def test_compare_of_a_missing_folder(tmp_path, run_cli):
    one_line_error(run_cli("translearn-compare", [tmp_path / "nowhere"]), "translearn-compare",
              str(tmp_path / "nowhere"), "does not exist")


def test_features_into_a_read_only_folder(tmp_path, run_overrides, run_cli, monkeypatch):
    from omegaconf import OmegaConf

    from translearn.cli.config import compose
    from translearn.train import train

    overrides = [*run_overrides, "trainer.max_epochs=1", "logger=none"]
    train(compose(overrides, output_dir=tmp_path / "run"))
    (tmp_path / "run" / ".hydra").mkdir()
    OmegaConf.save(compose(overrides, output_dir=tmp_path / "run"), tmp_path / "run" / ".hydra" / "config.yaml")
    _locked(monkeypatch, tmp_path / "locked")
    done = run_cli("translearn-features", [tmp_path / "run", "--out", tmp_path / "locked" / "f"])
    one_line_error(done, "translearn-features", "--out", "Permission denied")
