"""translearn-probe: how well a linear probe predicts an item attribute from a run's item vectors.

  translearn-probe outputs/runs/<time> --domain arts --attribute attributes --word 3
  translearn-probe features/ --domain arts --attribute text --regex '(\\d+) pack' --json
  translearn-probe RUN --attribute attributes --word 3 --min-count 20 --out probe.json

RUN is a run folder (its checkpoint's item vectors) or a folder written by translearn-features (its
items_<domain>.npy; the labels come from the run it names). The label is a word of the item's
attributes or text (--word N, 0-based, splitting on whitespace, | and ,) or the first group of a
regular expression (--regex). Classes under --min-count items are dropped; a stratified split holds
out --test-fraction of each class; a multinomial logistic regression is fitted on the rest. Printed:
held-out accuracy, balanced accuracy, the majority-class baseline and the number of classes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from translearn.cli.device import add_device_option
from translearn.cli.errors import report_user_errors
from translearn.run_record import add_allow_flag

PROG = "translearn-probe"


@report_user_errors(PROG)
def main(argv: list[str] | None = None) -> int:
    from translearn.outputs.probe import FIELDS

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run", type=Path, help="a run folder, or a folder written by translearn-features")
    parser.add_argument("overrides", nargs="*", help="overrides of the run's saved config (as translearn-eval)")
    parser.add_argument("--attribute", choices=FIELDS, required=True, help="the item field to read labels from")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--word", type=int, help="0-based word position of the label")
    how.add_argument("--regex", help="regular expression; its first group (or the whole match) is the label")
    parser.add_argument("--domain", help="whose items (default: the target)")
    parser.add_argument("--min-count", type=int, default=10, help="drop classes with fewer items (default 10)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held out per class (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the weights (default 1e-3)")
    parser.add_argument("--checkpoint", default="best", help="run folder: best (default), last, or a .ckpt path")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    add_device_option(parser)
    add_allow_flag(parser)
    args = parser.parse_args(argv)
    from translearn.evaluation.device import resolve_device

    args.device = resolve_device(args.device)  # a run's item vectors are encoded there
    from translearn.outputs.probe import item_strings, probe_vectors

    vectors, prepared, source = _vectors(args)
    domain = args.domain or prepared.target
    strings = item_strings(prepared, domain, args.attribute)
    result = {**source, "domain": domain, "attribute": args.attribute,
              **({"word": args.word} if args.word is not None else {"regex": args.regex}),
              **probe_vectors(vectors, strings, args.word, args.regex, min_count=args.min_count,
                              test_fraction=args.test_fraction, seed=args.seed, l2=args.l2,
                              name=f"--attribute {args.attribute} " + (f"--word {args.word}" if args.word is not None
                                                                       else f"--regex {args.regex!r}"))}
    if args.out:
        from translearn.cache import atomic_write_json

        atomic_write_json(args.out, result)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        label = f"word {args.word}" if args.word is not None else f"regex {args.regex!r}"
        print(f"{args.run} {domain} {args.attribute} ({label}): {result['classes']} classes, "
              f"{result['test_items']:,} held-out items\n"
              f"  accuracy {result['accuracy']:.4f}  balanced {result['balanced_accuracy']:.4f}  "
              f"majority baseline {result['majority_baseline']:.4f} ({result['majority_class']!r})  "
              f"chance {result['chance']:.4f}\n"
              f"  left out: {result['items_without_value']:,} items without a value, {result['dropped_classes']} "
              f"classes under {args.min_count} items ({result['dropped_items']:,} items)")
    return 0


def _vectors(args: argparse.Namespace) -> tuple:
    """(item vectors [n, D] of the probed domain, the prepared data, where the vectors come from)."""
    from translearn.outputs.features import MANIFEST, read_features

    if (args.run / MANIFEST).is_file():
        from translearn.build import build_run_data
        from translearn.cli.evaluate import load_run_config
        from translearn.outputs.run import OutputError

        manifest, domain, vectors, ids = read_features(args.run, args.domain)
        cfg = load_run_config(Path(manifest["run"]), args.overrides)
        prepared = build_run_data(cfg)
        saved = manifest.get("data_split_key")
        if saved and saved != prepared.split_key:
            message = (f"{args.run}: the features were exported from data {manifest.get('data_key', '?')[:12]} but the "
                       f"run's data as prepared now is {prepared.key[:12]} (data_manifest_key): the input files or "
                       "the data settings changed since")
            if not args.allow_other_data:
                raise OutputError(f"{message}; pass --allow-other-data to probe anyway")
            print(f"translearn-probe: warning: {message}; used anyway (--allow-other-data)", file=sys.stderr)
        if args.domain is None and domain != prepared.target:
            raise OutputError(f"--domain: {args.run} has no vectors of the target {prepared.target!r}")
        expected = prepared.data.domain(domain).item_ids.astype(str)
        if len(expected) != len(ids) or not (expected == ids).all():
            raise OutputError(f"{args.run}: the item ids of {domain!r} are not those of the run's data "
                              f"({manifest['run']}): the features were exported from other data")
        return vectors, prepared, {"features": str(args.run), "run": manifest["run"]}
    from translearn.outputs import item_table, load_run

    loaded = load_run(args.run, args.checkpoint, args.overrides, device=args.device,
                      allow_other_data=args.allow_other_data)
    domain = loaded.domain(args.domain)
    return item_table(loaded, domain), loaded.prepared, loaded.describe()


if __name__ == "__main__":
    sys.exit(main())
