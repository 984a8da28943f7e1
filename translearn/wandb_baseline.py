"""The gain a W&B run's summary shows: the run against the finished ``target_only`` run of its group.

Where the baseline is looked for (``baseline_candidates``): in a multirun, every ``metrics.json`` of the
sweep folder (its jobs share one W&B group); for a single run, the sibling run folders (e.g. the other
``outputs/runs/<time>`` folders) whose ``wandb.json`` names the same W&B project and group. Of those, the
runs of ``TargetOnly`` on the same data (``data_manifest_key``), seed and ``repeats`` rule match
(``find_baseline``); of several (a search over its knobs), the best on the monitored validation metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from translearn.metrics.direction import metric_mode

BASELINE = "TargetOnly"  # the strategy class transfer gains are measured against
RUN_FILE = "wandb.json"  # in a run folder: which W&B run it logged to (written by translearn.wandb_logging)


def relative_gain(value: float, base: float, key: str) -> float | None:
    """Relative gain of ``value`` over ``base``, positive when better (lower is better for rmse, mae, ...);
    None for a key with no known direction or a zero baseline."""
    try:
        mode = metric_mode(key)
    except ValueError:
        return None
    if not base:
        return None
    return (value - base) / abs(base) if mode == "max" else (base - value) / abs(base)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing, another job writing it now, or not ours
    return value if isinstance(value, dict) else None


def baseline_candidates(run_dir: Path, sweep: Path | None, project: str, group: str) -> list[Path]:
    """The ``metrics.json`` files the baseline may be in (see the module docstring), this run's excluded."""
    run_dir = Path(run_dir)
    if sweep is not None:
        found = sorted(Path(sweep).rglob("metrics.json"))
    else:
        found = []
        for side in sorted(run_dir.parent.glob(f"*/{RUN_FILE}")):  # siblings only: never a walk of a big tree
            other = _read_json(side)
            if other and other.get("project") == project and other.get("group") == group:
                found.append(side.parent / "metrics.json")
    return [p for p in found if p.parent.resolve() != run_dir.resolve()]


def find_baseline(summary: Mapping[str, Any], candidates: Iterable[Path], monitor: str) -> tuple[Path, dict] | None:
    """The matching ``target_only`` run among ``candidates`` (``metrics.json`` paths): (its folder, its
    metrics.json), or None."""
    found = []
    for path in candidates:
        other = _read_json(path)
        if other and other.get("strategy") == BASELINE and all(
                other.get(k) == summary.get(k) for k in ("data_manifest_key", "seed", "repeats")):
            found.append((path.parent, other))
    scored = [(run, m) for run, m in found if isinstance(m.get(monitor), int | float)]
    if not scored:
        return found[0] if found else None
    sign = 1.0 if metric_mode(monitor) == "max" else -1.0
    return max(scored, key=lambda item: sign * item[1][monitor])


def baseline_gain(summary: Mapping[str, Any], candidates: Iterable[Path], monitor: str,
                  relative_to: Path) -> dict[str, Any]:
    """``{"gain/<test key>": relative gain, "baseline_run": its folder relative to ``relative_to``}`` over
    the matching ``target_only`` run; empty for a baseline run itself or when none has finished."""
    if summary.get("strategy") == BASELINE:
        return {}
    found = find_baseline(summary, candidates, monitor)
    if found is None:
        return {}
    folder, base = found
    out: dict[str, Any] = {"baseline_run": os.path.relpath(folder, relative_to)}
    for key, value in summary.items():
        if key.startswith("test/") and isinstance(value, int | float) and isinstance(base.get(key), int | float):
            gain = relative_gain(float(value), float(base[key]), key)
            if gain is not None:
                out[f"gain/{key}"] = gain
    return out
