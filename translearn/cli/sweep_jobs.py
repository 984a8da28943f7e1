"""A Hydra callback that tells the sweep's own process which jobs ran and which failed.

``translearn-train`` remembers failed jobs in module state, which only works when the jobs run in its
process (Hydra's basic launcher). Under ``hydra/launcher=joblib`` (worker processes) or ``submitit``
(cluster jobs) the failures happen elsewhere; each failed job still writes ``error.json`` into its folder,
so at the end of the sweep this callback reads the sweep folder and reports every job folder made by this
sweep, failed or not, to ``translearn.cli.train``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepJobs(Callback):
    """Collects, at ``on_multirun_end``, the job folders under ``hydra.sweep.dir`` made since the sweep began
    (a folder with a ``.hydra`` subfolder) and the one-line message of each ``error.json`` in them."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # file times have a coarse resolution on some file systems

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from translearn.cli import train

        jobs, failed = sweep_jobs(Path(str(config.hydra.sweep.dir)).resolve(), self.started)
        known = set(train._jobs)
        train._jobs.extend(j for j in jobs if j not in known)
        seen = {folder for folder, _ in train._failed}
        train._failed.extend((f, m) for f, m in failed if f not in seen)


def sweep_jobs(sweep_dir: Path, since: float) -> tuple[list[str], list[tuple[str, str]]]:
    """(job folders, [(job folder, message)] of failed jobs) under ``sweep_dir`` written at or after ``since``."""
    jobs: list[str] = []
    failed: list[tuple[str, str]] = []
    if not sweep_dir.is_dir():
        return jobs, failed
    for config in sorted(sweep_dir.glob("**/.hydra/config.yaml")):
        folder = config.parent.parent
        if config.stat().st_mtime < since:
            continue  # a job of an earlier sweep into the same folder
        jobs.append(str(folder))
        error = folder / "error.json"
        if error.is_file():
            try:
                message = json.loads(error.read_text()).get("message", "failed")
            except (OSError, ValueError):
                message = "failed (error.json unreadable)"
            failed.append((str(folder), message))
    return jobs, failed
