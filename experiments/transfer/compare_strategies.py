"""One strategy against another with ``translearn-compare``'s rule (the baseline need not be target_only).

``translearn-compare`` measures every row against ``target_only``; this script applies the same rule
(``translearn.compare.rows.gain_over``: the relative gain of the means, and the verdict from a two-level
bootstrap, seeds then users, paired by seed) to the row of ``--row`` against the row of ``--baseline``,
found in the given run folders by their strategy class names:

    .venv/bin/python experiments/transfer/compare_strategies.py /tmp/ptupcdr-runs --row PTUPCDR --baseline Mapping
"""

from __future__ import annotations

import argparse
from pathlib import Path

from translearn.compare.rows import gain_over, group_runs
from translearn.compare.runs import load_runs
from translearn.compare.stats import t_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="+", help="run folders or folders that contain runs")
    parser.add_argument("--row", required=True, help="strategy class of the row (e.g. PTUPCDR)")
    parser.add_argument("--baseline", required=True, help="strategy class of the baseline (e.g. Mapping)")
    parser.add_argument("--metric", default="test/target/ndcg@10")
    args = parser.parse_args()
    runs, failed = load_runs([Path(r) for r in args.roots])
    groups = {g.strategy: g for g in group_runs(runs)}
    for name in (args.row, args.baseline):
        if name not in groups:
            parser.error(f"no runs of strategy {name} under {', '.join(args.roots)}; found {', '.join(groups)}")
    row, base = groups[args.row], groups[args.baseline]
    if row.data_key != base.data_key or row.seeds != base.seeds:
        parser.error(f"{args.row} and {args.baseline} differ in data key or seeds ({row.seeds} vs {base.seeds})")
    for g in (row, base):
        values = g.values(args.metric)
        ci = t_interval(values)
        spread = f" [{ci[1]:.4f}, {ci[2]:.4f}]" if ci else ""
        print(f"{g.strategy}: {args.metric} {sum(values) / len(values):.4f}{spread} seeds {g.seeds} "
              f"({', '.join(f'{v:.4f}' for v in values)})")
    gain = gain_over(row, base, args.metric)
    low, high = gain["gain_ci"] or (float("nan"), float("nan"))
    print(f"{args.row} vs {args.baseline}: gain {gain['gain']:+.1%} [{low:+.1%}, {high:+.1%}] "
          f"verdict {gain['verdict']} ({gain['basis']})")
    for f in failed:
        print(f"failed: {f}")


if __name__ == "__main__":
    main()
