"""Run records: what ``translearn-compare`` reads from finished (and failed) run folders.

``load_runs`` reads run folders; ``load_wandb`` reads W&B runs (offline run folders or an online
project, through ``translearn.wandb_runs``) into the same ``RunRecord``s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from translearn.content_keys import moved_key
from translearn.data.errors import DataError
from translearn.metrics.per_user import load_per_user

IGNORED = ("seed", "hydra.", "paths.", "resume")  # overrides that do not define a setting


@dataclass
class RunRecord:
    """One finished run: its folder, ``metrics.json``, its setting (overrides minus seed and paths)."""

    folder: Path
    summary: dict
    setting: dict[str, str]
    sweep: str  # the sweep folder a multirun job belongs to ("" for a single run)
    _per_user: dict | None = field(default=None, repr=False)

    @property
    def seed(self) -> int | None:
        return self.summary.get("seed")

    @property
    def strategy(self) -> str:
        return str(self.summary.get("strategy", "?"))

    def per_user(self, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(users [U], values [U]) of a ``test/target/<name>`` metric, or None when the run saved none."""
        parts = metric.split("/")
        if len(parts) != 3 or parts[:2] != ["test", "target"]:
            return None
        if self._per_user is None:
            self._per_user = load_per_user(self.folder) or {}
        if parts[2] not in self._per_user:
            return None
        return self._per_user["users"], self._per_user[parts[2]]


@dataclass
class FailedRun:
    folder: Path
    message: str


def _setting(folder: Path) -> dict[str, str]:
    saved = folder / ".hydra" / "overrides.yaml"
    return _setting_of((yaml.safe_load(saved.read_text()) if saved.is_file() else None) or [])


def _sweep(folder: Path) -> str:
    return str(folder.parent) if (folder.parent / "multirun.yaml").is_file() else ""


def find_folders(roots: list[Path], name: str) -> list[Path]:
    return sorted({p.parent for root in roots for p in [root / name, *root.rglob(name)] if p.is_file()})


def load_runs(roots: list[Path]) -> tuple[list[RunRecord], list[FailedRun]]:
    """Every run folder under ``roots`` (``metrics.json``) and every failed job (``error.json``)."""
    missing = [root for root in roots if not root.exists()]
    if missing:
        raise DataError("does not exist", path=missing[0])
    runs = [RunRecord(f, _summary(f / "metrics.json"), _setting(f), _sweep(f))
            for f in find_folders(roots, "metrics.json")]
    failed = []
    for f in find_folders(roots, "error.json"):
        if (f / "metrics.json").is_file():
            continue
        try:
            message = json.loads((f / "error.json").read_text()).get("message", "?")
        except (OSError, ValueError):
            message = "error.json is unreadable"
        failed.append(FailedRun(f, message))
    return runs, failed


def _summary(path: Path) -> dict:
    """A run's ``metrics.json``; a DataError naming the file when it is truncated or not a JSON object."""
    try:
        summary = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"not readable JSON (truncated? {err}); rerun that job or move it away", path=path) from None
    if not isinstance(summary, dict):
        raise DataError("not a metrics.json written by translearn-train (not a JSON object)", path=path)
    return summary


def check_finite(runs: list[RunRecord], metrics: list[str]) -> None:
    """DataError naming the run and the metric when one of ``metrics`` is NaN or infinite in a run."""
    for run in runs:
        for metric in metrics:
            value = run.summary.get(metric)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise DataError(f"{metric} is {value}; a run with a non-finite metric cannot be compared (rerun "
                                "it, or leave its folder out)", path=run.folder / "metrics.json")


def _setting_of(overrides: list) -> dict[str, str]:
    """A run's command-line overrides as {key: value}, with an old content key (``model.item_tower``, before the
    ``model.content`` node) under its new name, so a run of before and one of now with the same setting match."""
    out = {}
    for item in overrides or []:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        key = moved_key(key) or key
        if not key.startswith(IGNORED):
            out[key] = value
    return out


def load_wandb(source: str) -> tuple[list[RunRecord], list[FailedRun]]:
    """Finished W&B runs of ``source`` (a folder with offline runs, or ``entity/project`` online) as run
    records: the summary is the run's ``metrics.json``, the setting its logged ``hydra_overrides``, the
    sweep its W&B group. Per-user values are read from the run folder when it is on this machine."""
    from translearn.wandb_runs import read_runs

    runs, failed = [], []
    for rec in read_runs(source):
        folder = Path(rec.get("folder") or rec["run"] or rec["id"])  # a folder here: its per-user values
        if rec["state"] != "finished" or "seed" not in rec["summary"]:
            error = rec["summary"].get("error")  # what the job's error.json holds, when translearn logged it
            message = f": {error.get('message')}" if isinstance(error, dict) else ""
            failed.append(FailedRun(folder, f"W&B run {rec['id']} is {rec['state']}{message}"))
            continue
        runs.append(RunRecord(folder, dict(rec["summary"]), _setting_of(rec["config"].get("hydra_overrides")),
                              rec["group"]))
    return runs, failed
