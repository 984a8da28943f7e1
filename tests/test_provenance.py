"""metrics.json records the versions and the git commit that made a result."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import numpy
import pytorch_lightning
import torch
import torchmetrics

from translearn.provenance import git_state, versions

ROOT = Path(__file__).resolve().parents[1]


def test_versions_are_those_imported():
    v = versions()
    assert v["torch"] == torch.__version__ and v["numpy"] == numpy.__version__
    assert v["pytorch_lightning"] == pytorch_lightning.__version__ and v["torchmetrics"] == torchmetrics.__version__
    assert v["hydra"] == metadata.version("hydra-core") and v["translearn"] == metadata.version("translearn")


def test_commit_of_a_checkout_and_none_elsewhere(tmp_path):
    if not (ROOT / ".git").exists():
        assert versions()["translearn_commit"] is None
        return
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert versions()["translearn_commit"] == head.strip()
    assert isinstance(versions()["translearn_dirty"], bool)
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
