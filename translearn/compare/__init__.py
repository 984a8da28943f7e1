"""``translearn-compare`` internals, and ``compare_runs`` for use from Python.

    from translearn.compare import compare_runs
    rows, failed = compare_runs(["outputs/multiruns/2026-12-02_10-00-00-000000"])
    [(r["row"], r["gain"], r["gain_ci"], r["verdict"]) for r in rows]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def compare_runs(roots: Sequence[str | Path] = (), metric: str = "test/target/ndcg@10",
                 wandb: Sequence[str] = (), metrics: Sequence[str] = ()) -> tuple[list[dict], list]:
    """The rows ``translearn-compare --json`` prints (one per setting, with ``gain``, ``gain_ci`` and
    ``verdict``) and the failed jobs, from run folders and W&B sources; see docs/sweeps.md for the rule."""
    from translearn.compare.rows import group_runs, summarise
    from translearn.compare.runs import load_runs, load_wandb

    runs, failed = load_runs([Path(r) for r in roots])
    for source in wandb:
        more, more_failed = load_wandb(source)
        runs, failed = runs + more, failed + more_failed
    return summarise(group_runs(runs), metric, list(metrics)), failed
