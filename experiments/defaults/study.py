"""Which training budget should be the default? Evidence from long runs on every shared data set.

Each case trains once per seed with a generous budget (``--max-epochs`` epochs, early-stopping patience
``--patience``), logging validation NDCG@10 after every epoch. A stopping rule (epoch cap, patience in
epochs, a floor of optimiser steps before early stopping may end the run) is then replayed on each logged
curve: where the rule would have stopped, which epoch it would have selected, and how much of the long
run's best validation NDCG@10 that epoch reaches. Validation only: the test split selects nothing here.

    TRANSLEARN_CACHE_DIR=/tmp/tw/cache OMP_NUM_THREADS=1 .venv/bin/python experiments/defaults/study.py \
        --out /work/exp/defaults
    .venv/bin/python experiments/defaults/study.py --out /work/exp/defaults --cases mf_arts_office --seeds 0

Runs already present are reused (the script resumes); ``--table-only`` replays the rules on what exists.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from translearn.cache import entry_lock

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(Path(sys.executable).parent / "translearn-train")
MONITOR = "val/target/ndcg@10"

# case -> overrides (the model's and strategy's own defaults otherwise)
CASES = {
    "mf_synthetic": ["strategy=target_only"],
    "mf_synthetic_joint": ["strategy=joint"],
    "mf_synthetic_distill": ["strategy=distill"],
    "mf_arts_office": ["data=arts_office", "strategy=target_only"],
    "mf_arts_office_joint": ["data=arts_office", "strategy=joint"],
    "mf_cloth_sport": ["data=cloth_sport", "strategy=target_only"],
    "mf_cloth_sport_sparse": ["data=cloth_sport", "data.preprocess.sparsify.keep_fraction=0.3",
                              "strategy=target_only"],
    "mf_ml100k": ["data=ml100k", "strategy=target_only"],
    "mf_ml100k_genres_sparse": ["data=ml100k_genres", "data.preprocess.sparsify.keep_fraction=0.3",
                                "strategy=target_only"],
    "sasrec_arts_office": ["data=arts_office", "model=sasrec", "strategy=target_only"],
    "sasrec_ml100k": ["data=ml100k", "model=sasrec", "strategy=target_only"],
}
# (label, epoch cap, patience in epochs, optimiser steps before early stopping may end a run)
RULES = [
    ("30 epochs, patience 10 (old default)", 30, 10, 0),
    ("100 epochs, patience 10", 100, 10, 0),
    ("200 epochs, patience 10", 200, 10, 0),
    ("200 epochs, patience 10, >= 2000 steps", 200, 10, 2000),
    ("100 epochs, patience 20", 100, 20, 0),
    ("200 epochs, patience 20", 200, 20, 0),
    ("200 epochs, patience 20, >= 1000 steps", 200, 20, 1000),
    ("200 epochs, patience 20, >= 2000 steps", 200, 20, 2000),
    ("300 epochs, patience 30", 300, 30, 0),
]


# --confirm: each case at the old defaults and at the current ones (no budget override), test metrics
OLD_DEFAULTS = ["trainer.max_epochs=30", "callbacks.early_stopping.patience=10", "callbacks.early_stopping.min_steps=0",
                "++strategy.stage.max_epochs=20", "++strategy.stage.patience=5", "++strategy.stage.min_steps=0"]
BUDGETS = {"old": OLD_DEFAULTS, "new": []}
TEST = "test/target/ndcg@10"


@dataclass
class Curve:
    """One run's per-epoch log: validation metric, global step at the epoch's end, mean training loss."""
    val: list[float]
    steps: list[int]
    loss: list[float]


def read_curve(folder: Path) -> Curve:
    """Parse ``csv/metrics.csv`` of a run folder into per-epoch lists (epoch order)."""
    val: dict[int, float] = {}
    steps: dict[int, int] = {}
    loss: dict[int, float] = {}
    with open(folder / "csv" / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            epoch = int(row["epoch"])
            if row.get(MONITOR):
                val[epoch] = float(row[MONITOR])
                steps[epoch] = int(row["step"]) + 1
            if row.get("train/loss"):
                loss[epoch] = float(row["train/loss"])
    epochs = sorted(val)
    return Curve([val[e] for e in epochs], [steps[e] for e in epochs], [loss.get(e, math.nan) for e in epochs])


def replay(curve: Curve, max_epochs: int, patience: int, min_steps: int) -> tuple[int, int]:
    """(epochs run, selected epoch index) under ``translearn.callbacks.EarlyStopping``'s rule.

    A run stops at the first epoch end where ``patience`` checks have passed without improvement and the
    global step has reached ``min_steps``, or at ``max_epochs``.
    """
    best, best_epoch, wait = -math.inf, 0, 0
    for epoch, value in enumerate(curve.val[:max_epochs]):
        if value > best:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
        if wait >= patience and curve.steps[epoch] >= min_steps:
            return epoch + 1, best_epoch
    return min(max_epochs, len(curve.val)), best_epoch


def run_case(name: str, seed: int, out: Path, max_epochs: int, patience: int) -> Path:
    budget = [f"trainer.max_epochs={max_epochs}", f"callbacks.early_stopping.patience={patience}"]
    return train(out / name / f"seed{seed}", [*CASES[name], f"seed={seed}", *budget])


def train(folder: Path, overrides: list[str]) -> Path:
    """Run ``translearn-train`` into ``folder`` unless it already holds a finished run."""
    with entry_lock(folder):
        if not (folder / "metrics.json").exists():
            cmd = [TRAIN, *overrides, "logger=csv", f"hydra.run.dir={folder}"]
            print("+", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return folder


def summarise(out: Path, names: list[str]) -> str:
    lines = ["| case | steps/epoch | long run: best epoch, val NDCG@10, loss then | "
             + " | ".join(label for label, *_ in RULES) + " |",
             "|---|---|---|" + "---|" * len(RULES)]
    for name in names:
        curves = [read_curve(f.parent) for f in sorted((out / name).glob("seed*/metrics.json"))]
        if not curves:
            continue
        best = [max(c.val) for c in curves]
        best_at = [c.val.index(b) for c, b in zip(curves, best, strict=True)]
        loss_at = [c.loss[i] for c, i in zip(curves, best_at, strict=True)]
        cells = []
        for _, cap, pat, floor in RULES:
            picks = [replay(c, cap, pat, floor) for c in curves]
            share = statistics.mean(c.val[sel] / b for c, (_, sel), b in zip(curves, picks, best, strict=True))
            run = statistics.mean(n for n, _ in picks)
            cells.append(f"{100 * share:.0f}% ({run:.0f} ep)")
        long = (f"{'/'.join(str(i + 1) for i in best_at)}, {statistics.mean(best):.4f}, "
                f"{statistics.mean(loss_at):.3f}")
        lines.append(f"| {name} (n={len(curves)}) | {curves[0].steps[0]} | {long} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confirm(out: Path, names: list[str], seeds: list[int]) -> str:
    """Test NDCG@10 (mean ± std over seeds) and epochs run, old defaults against the current ones."""
    lines = ["| case | old: test NDCG@10 | old: epochs | new: test NDCG@10 | new: epochs | new / old |",
             "|---|---|---|---|---|---|"]
    for name in names:
        cells, means = [], []
        for budget, extra in BUDGETS.items():
            runs = [json.loads((train(out / "confirm" / budget / name / f"seed{seed}",
                                      [*CASES[name], f"seed={seed}", *extra]) / "metrics.json").read_text())
                    for seed in seeds]
            values = [r[TEST] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            means.append(statistics.mean(values))
            cells += [f"{means[-1]:.4f} ± {std:.4f}", f"{statistics.mean(r['epochs_run'] for r in runs):.0f}"]
        lines.append(f"| {name} (n={len(seeds)}) | " + " | ".join(cells) + f" | {means[1] / means[0]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "experiments" / "defaults")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=40)
    parser.add_argument("--table-only", action="store_true", help="replay the rules on the runs present")
    parser.add_argument("--confirm", action="store_true",
                        help="run each case at the old and the current defaults and compare test NDCG@10")
    args = parser.parse_args()
    if args.confirm:
        table = confirm(args.out, args.cases, args.seeds)
        print(table)
        (args.out / "confirm.md").write_text(table + "\n")
        return
    if not args.table_only:
        for name in args.cases:
            for seed in args.seeds:
                run_case(name, seed, args.out, args.max_epochs, args.patience)
    table = summarise(args.out, args.cases)
    print(table)
    (args.out / "defaults.md").write_text(table + "\n")
    (args.out / "defaults.json").write_text(json.dumps({"rules": RULES, "cases": args.cases}, indent=1))


if __name__ == "__main__":
    main()
