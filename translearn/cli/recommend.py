"""translearn-recommend: top-k items with raw ids for raw user ids, from a run folder.

  translearn-recommend outputs/runs/<time> --users u1 u2 --k 10
  translearn-recommend RUN --all-users --k 20 --format json --out recs.json
  translearn-recommend RUN --users u1 --exclude train --domain arts

A deployed recommender leaves out every item the user has in the data (--exclude all, the default:
training, validation and test rows); --exclude train leaves out training rows only, as evaluation
does. Id models score the user's vector; sequence models the user's latest history (all their rows
in the model's history scope, or training rows only under --exclude train). Ties go to the lower
item index; a user with fewer than k candidate items gets a shorter list. CSV columns:
user_id,rank,item_id,score.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translearn.cli.device import add_device_option
from translearn.cli.errors import report_user_errors
from translearn.errors import ConfigError
from translearn.run_record import add_allow_flag

PROG = "translearn-recommend"


@report_user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    from translearn.outputs.known import EXCLUDE
    from translearn.outputs.recommend import FORMATS

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run", type=Path, help="a run folder written by translearn-train")
    parser.add_argument("overrides", nargs="*", help="overrides of the run's saved config (as translearn-eval)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", nargs="+", metavar="ID", help="raw user ids")
    who.add_argument("--all-users", action="store_true", help="every user of the run's data")
    parser.add_argument("--k", type=int, default=10, help="list length (default 10)")
    parser.add_argument("--domain", help="domain to recommend from (default: the target)")
    parser.add_argument("--exclude", choices=EXCLUDE, default="all", help="known items to leave out (default all)")
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    parser.add_argument("--checkpoint", default="best", help="best (default), last, or a .ckpt path")
    parser.add_argument("--batch-size", type=int, default=1024, help="users scored per step (default 1024)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    add_device_option(parser)
    add_allow_flag(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}", config_key="--batch-size")
    if args.out is not None and args.out.is_dir():
        raise ConfigError(f"--out: {args.out} is a folder; give a file name", config_key="--out")
    from translearn.evaluation.device import resolve_device

    args.device = resolve_device(args.device)
    from translearn.outputs import load_run, recommend, user_indices

    loaded = load_run(args.run, args.checkpoint, args.overrides, device=args.device,
                      allow_other_data=args.allow_other_data)
    users = None if args.all_users else user_indices(loaded.prepared, args.users)
    recs = recommend(loaded, users, k=args.k, domain=args.domain, exclude=args.exclude,
                     batch_size=args.batch_size, show=args.progress)
    write = recs.write_csv if args.format == "csv" else recs.write_json
    if args.out is None:
        write(sys.stdout)
        return 0
    import io

    from translearn.cache import atomic_write_bytes

    text = io.StringIO()
    write(text)
    atomic_write_bytes(args.out, text.getvalue().encode())
    print(f"{len(recs.users):,} users, top {args.k} of {recs.domain} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
