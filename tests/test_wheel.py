"""A built wheel runs translearn-train from outside the checkout, with the configs packed inside it, and a
user's own config directory (Hydra search path) adds data sets, strategies and experiments on top, exactly
as docs/extending.md#your-own-config-directory shows: its YAML files and commands are read from that page."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import yaml

import translearn
from translearn.cli.config import compose

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"


def documented_user_conf(folder: Path) -> list[list[str]]:
    """Write the page's ``my_conf/...yaml`` blocks under ``folder``; return its commands (``$PWD`` = folder)."""
    section = PAGE.read_text().split("## Your own config directory", 1)[1].split("\n## ", 1)[0]
    written = 0
    for block in re.findall(r"^```yaml\n(.*?)^```", section, re.M | re.S):
        name = re.search(r"^# (my_conf/\S+\.yaml)", block, re.M)
        if name:
            (folder / name.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (folder / name.group(1)).write_text(block)
            written += 1
    assert written == 3, f"{PAGE}: expected the three my_conf files, found {written}"
    bash = re.search(r"^```bash\n(.*?)^```", section, re.M | re.S).group(1)
    return [shlex.split(line.replace("$PWD", str(folder))) for line in bash.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A fresh virtual environment with the wheel installed, the dependencies borrowed from this one
    (a .pth line adds their folder; the editable checkout's own finder there is not loaded)."""
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("not a checkout: nothing to build")
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp / "dist").glob("translearn-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-2000:]
    user = tmp / "project"  # a user's folder, outside the checkout
    user.mkdir()
    return {"python": python, "bin": venv / "bin", "tmp": tmp, "user": user, "site": site}


def _env(tmp: Path) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": "",
            "TRANSLEARN_CACHE_DIR": str(tmp / "cache")}


def _run(wheel_env: dict, args: list[str]) -> subprocess.CompletedProcess:
    assert args[0] == "translearn-train"
    done = subprocess.run([str(wheel_env["bin"] / args[0]), *args[1:]], cwd=wheel_env["user"],
                          env=_env(wheel_env["tmp"]), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_wheel_trains_with_a_user_config_dir_outside_the_checkout(wheel_env):
    where = subprocess.run([str(wheel_env["python"]), "-c", "import translearn; print(translearn.__file__)"],
                           cwd=wheel_env["user"], env=_env(wheel_env["tmp"]), capture_output=True, text=True,
                           check=True).stdout.strip()
    assert where == str(wheel_env["site"] / "translearn" / "__init__.py")  # the wheel's copy, not the checkout
    search_path, _ = documented_user_conf(wheel_env["user"])
    run = wheel_env["tmp"] / "run"
    _run(wheel_env, [*search_path, "logger=none", f"hydra.run.dir={run}"])
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["data"] == "small_synthetic" and summary["strategy"] == "Joint"  # my_conf/data, strategy
    assert summary["epochs_run"] == 3  # my_conf/experiment/my_study.yaml's trainer.max_epochs
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["strategy"]["lam"] == 0.3
    assert (run / "per_user_test.npz").is_file() and summary["test/target/ndcg@10"] > 0
    versions = summary["versions"]  # installed from a wheel: a version, no commit
    assert versions["translearn"] == translearn.__version__ and versions["torch"] == torch.__version__
    assert versions["translearn_commit"] is None and versions["translearn_dirty"] is None


def test_the_wheel_takes_a_relative_config_dir(wheel_env):
    _, config_dir = documented_user_conf(wheel_env["user"])
    job = yaml.safe_load(_run(wheel_env, [*config_dir, "--cfg", "job"]).stdout)
    assert job["data"]["name"] == "small_synthetic" and job["strategy"]["lam"] == 0.3 and job["seed"] == 1
    assert job["data"]["dataset"]["num_users"] == 300 and job["trainer"]["max_epochs"] == 200  # no experiment


def test_the_checkout_composes_the_same_user_config_dir(tmp_path):
    search_path, _ = documented_user_conf(tmp_path)
    cfg = compose(search_path[1:])
    assert cfg.data.name == "small_synthetic" and cfg.data.dataset.num_items == [80, 50]
    assert cfg.strategy.lam == 0.3 and cfg.trainer.max_epochs == 3
    assert cfg.data.dataset.similarity == compose([]).data.dataset.similarity  # the rest from synthetic.yaml
