"""translearn-features: export a run's item vectors (and static user vectors) as .npy and Parquet.

  translearn-features outputs/runs/<time> --out features/
  translearn-features RUN --out DIR --checkpoint last --domain office
  translearn-features RUN data.paths.data_root=/data --out DIR     # overrides of the saved config
  translearn-features --encoder text --data arts_office --out DIR   # a pretrained encoder alone, no run
  translearn-features --encoder text data=arts_office model.content.text_encoder=/models/e5 --out DIR

Writes, per domain of the model, items_<domain>.npy [num_items, D] and items_<domain>.parquet (item_id,
index, vector); id models also users.npy / users.parquet; and features.json (run, checkpoint, model
family, head, counts and dims). Sequence models have no static user vectors: features.json says so.
Row i of every table is internal index i; the Parquet files carry the raw ids.

With --encoder text|image there is no run: the items of the data (translearn-train's config and
overrides, e.g. data=arts_office model.content.text_encoder=...) go through the frozen content encoder a
model would use (model.content.text_encoder / text_template, model.content.image_backbone / image_weights),
from the same feature cache; translearn-probe reads the folder like any other.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translearn.cli.device import add_device_option
from translearn.cli.errors import report_user_errors
from translearn.errors import ConfigError
from translearn.run_record import add_allow_flag

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
    parser.add_argument("--encoder", choices=("text", "image"),
                        help="no run: the pretrained text or image encoder's item vectors (the "
                             "model.content.text_encoder / model.content.image_backbone of the config; other "
                             "positional words are its overrides)")
    parser.add_argument("--data", help="with --encoder: the data config whose items to encode (data=NAME)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")
    add_device_option(parser)
    add_allow_flag(parser)
    args = parser.parse_args(argv)
    from translearn.evaluation.device import resolve_device

    args.device = resolve_device(args.device)  # before any work (--encoder: the encoder picks its own device)
    if args.encoder:
        return _from_encoder(args)
    if args.data:
        raise ConfigError("--data goes with --encoder (a run folder brings its own data)", config_key="--data")
    if args.run is None:
        raise ConfigError("give a run folder (translearn-features RUN --out DIR)", config_key="run")
    from translearn.outputs import export_features, load_run

    loaded = load_run(args.run, args.checkpoint, args.overrides, device=args.device,
                      allow_other_data=args.allow_other_data)
    manifest = export_features(loaded, args.out, args.domain, show=args.progress)
    for domain, entry in manifest["domains"].items():
        print(f"{domain}: {entry['items']:,} items x {entry['dim']} -> {args.out / entry['npy']}, "
              f"{args.out / entry['parquet']}")
    users = manifest["users"]
    print(f"users: {users['users']:,} x {users['dim']} -> {args.out / users['npy']}" if users
          else f"users: none ({manifest['users_note']})")
    print(f"manifest: {args.out / 'features.json'}")
    return 0


def _from_encoder(args: argparse.Namespace) -> int:
    from translearn.cli.config import compose
    from translearn.outputs.encoder import export_encoder_features

    overrides = ([str(args.run)] if args.run is not None else []) + list(args.overrides)
    if args.data:
        overrides.insert(0, f"data={args.data}")
    cfg = compose(overrides, output_dir=args.out.resolve())
    manifest = export_encoder_features(cfg, args.out, args.encoder, args.domain)
    for domain, entry in manifest["domains"].items():
        print(f"{domain}: {entry['items']:,} items x {entry['dim']} ({manifest['encoder']['encoder']}) -> "
              f"{args.out / entry['npy']}, {args.out / entry['parquet']}")
    print(f"manifest: {args.out / 'features.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
