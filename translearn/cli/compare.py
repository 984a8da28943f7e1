"""translearn-compare: is the transfer gain real? One row per setting, its gain over target_only and a verdict.

  translearn-compare outputs/multiruns/2026-11-28_10-00-00-000000
  translearn-compare RUNS... --metric test/target/ndcg@10 --out report/   # + compare.md, .csv, gain.png
  translearn-compare RUNS... --json
  translearn-compare --wandb outputs/multiruns/<time>                    # the same runs, read from W&B

Runs are grouped by their overrides minus ``seed`` (a sweep over strategies and seeds gives one row per
strategy); the same seed twice in a group (two sweeps of the same setting) splits it by sweep. For each
row: the metric's mean with a 95% t-interval over seeds, and its relative gain over the target_only row
(and over popularity) with the same data, split, protocol and seeds. The verdict: a paired bootstrap over
users of the per-user difference (each user's values averaged over the seeds; 2,000 resamples): ``gain``
when its 95% interval lies above zero, ``negative_transfer`` below, ``no_evidence`` when it spans zero.
Without per-user files the t-interval of the per-seed gains decides instead. Failed jobs are listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from translearn.cli.errors import report_user_errors
from translearn.compare import output
from translearn.compare.rows import group_runs, summarise
from translearn.compare.runs import check_finite, load_runs, load_wandb

DEFAULT_METRIC = "test/target/ndcg@10"
DEFAULT_METRICS = ["val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@10", "test/target/mrr@10"]


@report_user_errors("translearn-compare")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="translearn-compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("roots", nargs="*", type=Path, help="run folders or folders that contain runs")
    parser.add_argument("--wandb", action="append", default=[], metavar="SOURCE",
                        help="W&B runs: a folder with offline runs (wandb/offline-run-*) or entity/project online")
    parser.add_argument("--metric", default=DEFAULT_METRIC, help="the test metric the gain is measured on")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS,
                        help="more metrics whose mean and sample std go into --json rows")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--out", type=Path, help="also write compare.md, compare.csv, compare.json and gain.png here")
    args = parser.parse_args(argv)
    if not args.metric.startswith("test/"):
        parser.error(f"--metric must be a test metric (test/...), got {args.metric}")
    if not args.roots and not args.wandb:
        parser.error("give run folders, --wandb SOURCE, or both")
    runs, failed = load_runs(args.roots)
    for source in args.wandb:
        more, more_failed = load_wandb(source)
        runs, failed = runs + more, failed + more_failed
    if not runs:
        print(f"translearn-compare: no metrics.json under {', '.join(map(str, args.roots + args.wandb))}",
              file=sys.stderr)
        for f in failed:
            print(f"  failed job {f.folder}: {f.message}", file=sys.stderr)
        return 1
    check_finite(runs, [args.metric, *args.metrics])
    rows = summarise(group_runs(runs), args.metric, args.metrics)
    if args.json:
        print(json.dumps({"rows": rows, "failed": [{"folder": str(f.folder), "message": f.message} for f in failed]},
                         indent=2))
    elif args.markdown:
        print(output.markdown(rows, args.metric, failed))
    else:
        print(output.text_table(rows, args.metric, failed))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compare.md").write_text(output.markdown(rows, args.metric, failed) + "\n")
        (args.out / "compare.csv").write_text(output.csv_text(rows))
        (args.out / "compare.json").write_text(json.dumps(rows, indent=2) + "\n")
        plotted = output.plot(rows, args.metric, args.out / "gain.png")
        print(f"written: {args.out}/compare.md, compare.csv, compare.json" + (", gain.png" if plotted else ""),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
