"""translearn-data: prepare a data set (or read it from the cache) and print its statistics and the
preprocessing report.

  translearn-data                                  # the default synthetic data
  translearn-data data=arts_office
  translearn-data data=cloth_sport data.preprocess.sparsify.keep_fraction=0.3 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from translearn.cli.config import compose, group_options
from translearn.cli.errors import report_user_errors


def format_stats(stats: dict) -> str:
    lines = [f"{'domain':<12} {'role':<7} {'users':>8} {'items':>8} {'interactions':>13} {'density':>10}"]
    for name, d in stats["domains"].items():
        role = "target" if name == stats["target"] else "source"
        lines.append(f"{name:<12} {role:<7} {d['users']:>8,} {d['items']:>8,} {d['interactions']:>13,} "
                     f"{d['density']:>10.6f}")
    lines.append(f"users in the shared index: {stats['users']:,}")
    lines += [f"overlap {pair}: {n:,} users" for pair, n in stats["overlap"].items()]
    split = stats["split"]
    lines.append("target split: " + ", ".join(f"{k} {v:,}" for k, v in split.items()))
    return "\n".join(lines)


@report_user_errors("translearn-data")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="translearn-data", description=__doc__.split("\n\n")[0],
        epilog=f"data sets: {', '.join(group_options('data'))}; splits: {', '.join(group_options('data/split'))}. "
               "Overrides use the same keys as translearn-train.")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=arts_office data.seed=1")
    parser.add_argument("--json", action="store_true", help="print the manifest (stats + report) as JSON")
    args = parser.parse_args(argv)

    from translearn.build import build_run_data

    cfg = compose(args.overrides, output_dir=tempfile.gettempdir())
    prepared = build_run_data(cfg)
    if args.json:
        print(json.dumps(prepared.manifest(), indent=2))
        return 0
    print(f"data set {cfg.data.name}: target {prepared.target}, sources {', '.join(prepared.sources) or 'none'}")
    print(format_stats(prepared.stats()))
    print("\npreprocessing report:")
    print("\n".join(f"  {line}" for line in prepared.report))
    print(f"\ncache key {prepared.key[:24]} in {cfg.paths.cache_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
