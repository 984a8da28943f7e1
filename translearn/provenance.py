"""Where a result came from: the versions of translearn and its main libraries, and the git commit.

``metrics.json`` records ``versions()`` so a number can be traced to the code that made it. The commit
(and whether the tree had uncommitted changes) is known only when translearn runs from a git checkout;
from an installed wheel it is None.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import import_module
from pathlib import Path

# metrics.json key -> module whose __version__ is recorded: the code actually imported (e.g. torch 2.13.0+cpu),
# which a stale install's metadata could misstate
MODULES = {"translearn": "translearn", "torch": "torch", "pytorch_lightning": "pytorch_lightning",
           "hydra": "hydra", "torchmetrics": "torchmetrics", "numpy": "numpy"}


def git_state(folder: Path | None = None) -> dict[str, object]:
    """{"commit": sha or None, "dirty": bool or None} of the checkout translearn runs from. Dirty means
    uncommitted changes, new files that git does not ignore included (a new config or module changes
    results too). Read at each call, so a long-lived process records the commit of the moment."""
    root = folder or Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def versions() -> dict[str, object]:
    """{"translearn": "0.1.0", "torch": "2.13.0+cpu", "pytorch_lightning": ..., "hydra": ..., "torchmetrics": ...,
    "numpy": ..., "translearn_commit": sha | None, "translearn_dirty": bool | None, "python": "3.11.7"}."""
    out: dict[str, object] = {key: import_module(name).__version__ for key, name in MODULES.items()}
    git = git_state()
    out["translearn_commit"], out["translearn_dirty"] = git["commit"], git["dirty"]
    out["python"] = platform.python_version()
    return out
