"""translearn-features: export a run's item vectors (and static user vectors) as .npy and Parquet.

  translearn-features outputs/runs/<time> --out features/
  translearn-features RUN --out DIR --checkpoint last --domain office
  translearn-features RUN data.paths.data_root=/data --out DIR     # overrides of the saved config

Writes, per domain of the model, items_<domain>.npy [num_items, D] and items_<domain>.parquet (item_id,
index, vector); id models also users.npy / users.parquet; and features.json (run, checkpoint, model
family, head, counts and dims). Sequence models have no static user vectors: features.json says so.
Row i of every table is internal index i; the Parquet files carry the raw ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translearn.cli.errors import report_user_errors
from translearn.errors import ConfigError

PROG = "translearn-features"


@report_user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run", nargs="?", type=Path, help="a run folder written by translearn-train")
    parser.add_argument("overrides", nargs="*", help="overrides of the run's saved config (as translearn-eval)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    parser.add_argument("--checkpoint", default="best", help="best (default), last, or a .ckpt path")
    parser.add_argument("--domain", action="append", help="export only this domain (repeatable; default all)")
    parser.add_argument("--encoder", help="a pretrained encoder (name or path) instead of a run: not available yet")
    parser.add_argument("--data", help="with --encoder: the data config whose items to encode")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    args = parser.parse_args(argv)
    if args.encoder or args.data:
        raise ConfigError("--encoder / --data: exporting a pretrained encoder's item vectors without a run is not "
                          "available yet (it needs the content encoders); export from a run folder that uses one",
                          config_key="--encoder")
    if args.run is None:
        raise ConfigError("give a run folder (translearn-features RUN --out DIR)", config_key="run")
    from translearn.outputs import export_features, load_run

    loaded = load_run(args.run, args.checkpoint, args.overrides)
    manifest = export_features(loaded, args.out, args.domain, show=args.progress)
    for domain, entry in manifest["domains"].items():
        print(f"{domain}: {entry['items']:,} items x {entry['dim']} -> {args.out / entry['npy']}, "
              f"{args.out / entry['parquet']}")
    users = manifest["users"]
    print(f"users: {users['users']:,} x {users['dim']} -> {args.out / users['npy']}" if users
          else f"users: none ({manifest['users_note']})")
    print(f"manifest: {args.out / 'features.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
