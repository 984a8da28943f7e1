"""translearn-compare: one table of mean and spread over seeds from finished runs.

  translearn-compare outputs/multiruns/2026-11-28_10-00-00-000000
  translearn-compare RUNS... --metrics val/target/ndcg@10 test/target/ndcg@10 --markdown

Runs are grouped by their command-line overrides minus ``seed`` (so a sweep over strategies and seeds
gives one row per strategy); each cell is ``mean ± sample std`` over the group's runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from translearn.cli.errors import report_user_errors

DEFAULT_METRICS = ["val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@10", "test/target/mrr@10"]
IGNORED = ("seed=", "hydra.", "paths.", "resume=")


def find_runs(roots: list[Path]) -> list[Path]:
    return sorted({p.parent for root in roots for p in ([root / "metrics.json"] + list(root.rglob("metrics.json")))
                   if p.is_file()})


def run_label(run: Path, summary: dict) -> str:
    """The run's overrides except seeds and paths, or its strategy and data set when it has none."""
    saved = run / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(saved.read_text()) if saved.is_file() else []
    kept = [o for o in overrides or [] if not o.startswith(IGNORED)]
    return " ".join(kept) or f"strategy={summary.get('strategy')} data={summary.get('data')}"


def summarise(runs: list[Path], metrics: list[str]) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        summary = json.loads((run / "metrics.json").read_text())
        groups[run_label(run, summary)].append(summary)
    rows = []
    for label, members in groups.items():
        row = {"runs": label, "n": len(members), "seeds": sorted(m.get("seed") for m in members)}
        for key in metrics:
            values = [m[key] for m in members if key in m]
            row[key] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0) \
                if values else None
        rows.append(row)
    return rows


def format_table(rows: list[dict], metrics: list[str], markdown: bool) -> str:
    def cell(value: tuple[float, float] | None) -> str:
        return "-" if value is None else f"{value[0]:.4f} ± {value[1]:.4f}"

    header = ["runs", "n", *metrics]
    body = [[r["runs"], str(r["n"]), *(cell(r[m]) for m in metrics)] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*b) for b in body])


@report_user_errors("translearn-compare")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="translearn-compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("roots", nargs="+", type=Path, help="run folders or folders that contain runs")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs = find_runs(args.roots)
    if not runs:
        print(f"translearn-compare: no metrics.json under {', '.join(map(str, args.roots))}", file=sys.stderr)
        return 1
    rows = summarise(runs, args.metrics)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, args.metrics, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
