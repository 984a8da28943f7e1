"""Rows of the comparison: runs grouped by setting, short labels, and each row's gain over its baselines.

A group is the runs with the same setting (overrides minus seed and paths) and the same data
(``data_manifest_key``: data, preprocessing, split and protocol). Runs are never pooled silently: when a
group holds the same seed twice (two sweeps that repeat a setting), it is split by sweep folder.

The baseline of a row is the ``target_only`` group (and, beside it, the ``popularity`` group) whose setting
equals the row's once the ``strategy`` keys are dropped. It must hold the same data key and the same
seeds, or the comparison is refused with a message that names what differs.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from translearn.compare.runs import RunRecord
from translearn.compare.stats import t_interval, two_level_bootstrap, verdict
from translearn.errors import ConfigError

BASELINES = {"target_only": "TargetOnly", "popularity": "Popularity"}


@dataclass
class Group:
    setting: dict[str, str]
    data_key: str
    sweep: str | None  # set when the group was split by sweep folder
    runs: list[RunRecord]
    label: str = ""
    gains: dict[str, dict] = field(default_factory=dict)  # baseline name -> gain record

    @property
    def strategy(self) -> str:
        return self.runs[0].strategy

    @property
    def seeds(self) -> list:
        return sorted(r.seed for r in self.runs)

    def values(self, metric: str) -> list[float]:
        return [float(r.summary[metric]) for r in self.runs if metric in r.summary]


def group_runs(runs: list[RunRecord]) -> list[Group]:
    by_setting: dict[tuple, list[RunRecord]] = defaultdict(list)
    for run in runs:
        key = (tuple(sorted(run.setting.items())), run.summary.get("data_manifest_key", ""), run.strategy)
        by_setting[key].append(run)
    groups = []
    for (setting, data_key, _), members in by_setting.items():
        seeds = [r.seed for r in members]
        if len(set(seeds)) == len(seeds):
            groups.append(Group(dict(setting), data_key, None, members))
            continue
        by_sweep: dict[str, list[RunRecord]] = defaultdict(list)
        for r in members:
            by_sweep[r.sweep or str(r.folder)].append(r)
        groups += [Group(dict(setting), data_key, sweep, rs) for sweep, rs in sorted(by_sweep.items())]
    _label(groups)
    return groups


def _label(groups: list[Group]) -> None:
    """Each group's label: only the setting keys whose values differ between groups."""
    keys = sorted({k for g in groups for k in g.setting})
    varying = [k for k in keys if len({g.setting.get(k) for g in groups}) > 1]
    for g in groups:
        parts = [f"{k}={g.setting[k]}" for k in varying if k in g.setting]
        if g.sweep is not None:
            parts.append(f"[sweep {g.sweep.rsplit('/', 1)[-1]}]")
        g.label = " ".join(parts) or g.strategy


def _without_strategy(setting: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in setting.items() if k != "strategy" and not k.startswith("strategy.")}


def find_baseline(group: Group, groups: list[Group], baseline: str) -> Group | None:
    """The baseline group of ``group`` (see the module doc); None when there is none in the comparison."""
    cls = BASELINES[baseline]
    base = _without_strategy(group.setting)
    found = [g for g in groups if g.strategy == cls and _without_strategy(g.setting) == base]
    if group.sweep is not None:
        found = [g for g in found if g.sweep in (group.sweep, None)] or found
    if not found:
        return None
    if len(found) > 1:
        raise ConfigError(f"row '{group.label}' has {len(found)} {baseline} rows to compare "
                          f"with ({', '.join(g.label for g in found)}); compare one sweep at a time")
    match = found[0]
    if match.data_key != group.data_key:
        raise ConfigError(f"row '{group.label}' and its {baseline} baseline '{match.label}' "
                          f"use different data (data_manifest_key {group.data_key[:12]} vs {match.data_key[:12]}: "
                          "data, preprocessing, split or protocol differ)")
    if group.seeds != match.seeds:
        raise ConfigError(f"row '{group.label}' has seeds {group.seeds} but its {baseline} "
                          f"baseline '{match.label}' has seeds {match.seeds}; run the same seeds for both")
    return match


def gain_over(group: Group, base: Group, metric: str) -> dict:
    """The gain record of ``group`` over ``base`` on ``metric`` (see docs/sweeps.md for the rule)."""
    mine = {r.seed: r for r in group.runs}
    theirs = {r.seed: r for r in base.runs}
    seeds = sorted(mine)
    per_seed = [float(mine[s].summary[metric]) / float(theirs[s].summary[metric]) - 1.0
                for s in seeds if float(theirs[s].summary.get(metric, 0.0)) > 0]
    seed_ci = t_interval(per_seed)
    out = {"baseline": base.label, "gain_seeds": statistics.mean(per_seed) if per_seed else None,
           "gain_ci_seeds": [seed_ci[1], seed_ci[2]] if seed_ci else None}
    paired = _paired_values(mine, theirs, seeds, metric)
    if paired is not None:
        result = two_level_bootstrap(*paired)
        n_seeds = len(paired[0])
        basis = (f"two-level bootstrap: {n_seeds} seeds, then {result.users:,} users within each seed"
                 if n_seeds > 1 else f"paired bootstrap over {result.users:,} users; one seed: the spread between "
                 "seeds is not measured")
        out |= {"gain": result.gain, "gain_ci": list(result.gain_ci), "verdict": verdict(*result.diff_ci),
                "basis": basis, "basis_short": f"{n_seeds} seeds x users" if n_seeds > 1 else "users, 1 seed"}
    elif seed_ci is not None:
        out |= {"gain": out["gain_seeds"], "gain_ci": out["gain_ci_seeds"], "verdict": verdict(*out["gain_ci_seeds"]),
                "basis": f"t-interval over {len(per_seed)} seeds (no per-user file)",
                "basis_short": f"{len(per_seed)} seeds (t)"}
    else:
        out |= {"gain": out["gain_seeds"], "gain_ci": None, "verdict": "no_evidence",
                "basis": "one seed and no per-user file", "basis_short": "1 seed, no users"}
    return out


def _paired_values(mine: dict, theirs: dict, seeds: list, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-user values of each seed, for the users every run evaluated with a value in every run:
    ([S, U], [S, U]); None when a run has no per-user file."""
    tables = []
    for s in seeds:
        for run in (mine[s], theirs[s]):
            got = run.per_user(metric)
            if got is None:
                return None
            tables.append(dict(zip(got[0].tolist(), got[1].tolist(), strict=True)))
    users = sorted(set.intersection(*(set(t) for t in tables)))
    if not users:
        return None
    values = np.array([[t[u] for u in users] for t in tables])  # [2 * seeds, U]: mine, theirs, mine, ...
    keep = ~np.isnan(values).any(axis=0)
    if not keep.any():
        return None
    return values[0::2, keep], values[1::2, keep]


def summarise(groups: list[Group], metric: str, extra: list[str]) -> list[dict]:
    """One JSON-able row per group: the metric's mean and seed interval, the other metrics' means and the
    gains over ``target_only`` and ``popularity``."""
    rows = []
    for g in groups:
        values = g.values(metric)
        ci = t_interval(values)
        row = {"row": g.label, "strategy": g.strategy, "n": len(g.runs), "seeds": g.seeds, "metric": metric,
               "mean": statistics.mean(values) if values else None, "ci": [ci[1], ci[2]] if ci else None,
               "folders": [str(r.folder) for r in g.runs]}
        for key in extra:
            vals = g.values(key)
            row[key] = [statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0] if vals else None
        for name in BASELINES:
            if g.strategy in BASELINES.values() or not values:  # a baseline gets no transfer verdict
                continue
            base = find_baseline(g, groups, name)
            if base is not None:
                g.gains[name] = gain_over(g, base, metric)
        vs = g.gains.get("target_only", {})
        row |= {"gain": vs.get("gain"), "gain_ci": vs.get("gain_ci"), "verdict": vs.get("verdict"),
                "gain_ci_seeds": vs.get("gain_ci_seeds"), "basis": vs.get("basis"),
                "basis_short": vs.get("basis_short"),
                "vs_popularity": g.gains.get("popularity")}
        rows.append(row)
    return rows
