"""Where a result came from: the versions of translearn and its main libraries, and the git commit.

``metrics.json`` records ``versions()`` so a number can be traced to the code that made it. The commit
(and whether the tree had uncommitted changes) is known only when translearn runs from a git checkout;
from an installed wheel it is None.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = {"translearn": "translearn", "torch": "torch", "pytorch_lightning": "pytorch-lightning",
            "hydra": "hydra-core", "torchmetrics": "torchmetrics", "numpy": "numpy"}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_state(folder: Path | None = None) -> dict[str, object]:
    """{"commit": sha or None, "dirty": bool or None} of the checkout translearn runs from."""
    root = folder or Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def versions() -> dict[str, object]:
    """{"translearn": "0.1.0", "translearn_commit": sha | None, "translearn_dirty": bool | None, "torch": ...,
    "pytorch_lightning": ..., "hydra": ..., "torchmetrics": ..., "numpy": ..., "python": ...}."""
    import torch

    out: dict[str, object] = {name: _version(dist) for name, dist in PACKAGES.items()}
    out["torch"] = torch.__version__  # the build actually imported (e.g. 2.13.0+cpu)
    git = git_state()
    out["translearn_commit"], out["translearn_dirty"] = git["commit"], git["dirty"]
    out["python"] = platform.python_version()
    return out
