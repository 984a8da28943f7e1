"""metrics.json records the versions and the git commit that made a result."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import hydra
import numpy
import pytorch_lightning
import torch
import torchmetrics

import translearn
from translearn.provenance import git_state, versions

ROOT = Path(__file__).resolve().parents[1]


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def test_versions_are_those_imported():
    v = versions()
    assert v["torch"] == torch.__version__ and v["numpy"] == numpy.__version__ and v["hydra"] == hydra.__version__
    assert v["pytorch_lightning"] == pytorch_lightning.__version__ and v["torchmetrics"] == torchmetrics.__version__
    pyproject = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert v["translearn"] == translearn.__version__ == pyproject  # the wheel's version is the one recorded
    assert re.fullmatch(r"3\.\d+\.\d+", v["python"])


def test_commit_of_this_checkout():
    if not (ROOT / ".git").exists():  # an unpacked sdist: nothing to compare with
        assert versions()["translearn_commit"] is None
        return
    assert versions()["translearn_commit"] == _git(ROOT, "rev-parse", "HEAD").strip()
    assert versions()["translearn_dirty"] == bool(_git(ROOT, "status", "--porcelain").strip())


def test_dirty_means_changed_or_new_files(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("outputs/\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "metrics.json").write_text("{}")  # ignored: still clean
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "b.py").write_text("y = 2\n")  # a new module is not committed code
    assert git_state(tmp_path) == {"commit": head, "dirty": True}
    (tmp_path / "b.py").unlink()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}
