"""A built wheel runs translearn-train from outside the checkout, with the configs packed inside it, and
a user's own config directory adds data sets on top of the packaged ones (Hydra search path)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A fresh virtual environment with the wheel installed, the dependencies borrowed from this one
    (a .pth line adds their folder; the editable checkout's own finder is not loaded from there)."""
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
    return {"python": python, "bin": venv / "bin", "tmp": tmp}


def _env(tmp: Path) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "PYTHONPATH": "",
            "TRANSLEARN_CACHE_DIR": str(tmp / "cache")}


def test_the_wheel_trains_from_a_folder_outside_the_checkout(wheel_env):
    tmp, python = wheel_env["tmp"], wheel_env["python"]
    where = subprocess.run([str(python), "-c", "import translearn; print(translearn.__file__)"], cwd=tmp,
                           env=_env(tmp), capture_output=True, text=True, check=True).stdout.strip()
    assert str(wheel_env["bin"].parent) in where and str(ROOT) not in where  # the wheel's copy is imported
    run = tmp / "run"
    done = subprocess.run([str(wheel_env["bin"] / "translearn-train"), "data.dataset.num_users=200",
                           "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={run}"],
                          cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "metrics.json").is_file() and (run / "per_user_test.npz").is_file()


def test_a_user_config_dir_adds_a_data_set(wheel_env):
    tmp = wheel_env["tmp"]
    mine = tmp / "my_conf" / "data"
    mine.mkdir(parents=True)
    (mine / "tiny.yaml").write_text("defaults:\n  - synthetic\n  - _self_\nname: tiny\n"
                                    "dataset:\n  num_users: 150\n  num_items: [60, 40]\n")
    run = tmp / "mine"
    done = subprocess.run([str(wheel_env["bin"] / "translearn-train"), "data=tiny", "trainer.max_epochs=1",
                           "logger=none", f"hydra.searchpath=[file://{tmp / 'my_conf'}]", f"hydra.run.dir={run}"],
                          cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"data": "tiny"' in (run / "metrics.json").read_text()
