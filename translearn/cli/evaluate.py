"""translearn-eval: evaluate a finished run's checkpoint on the validation and test splits.

  translearn-eval outputs/runs/2026-11-28_10-00-00-000000
  translearn-eval RUN --checkpoint last --split test
  translearn-eval RUN data/protocol=sampled       # same model, sampled-negatives protocol
  translearn-eval RUN --device cuda:1             # on a given device (default: the GPU if any, else CPU)

The run's saved config (RUN/.hydra/config.yaml) rebuilds the data and model; extra overrides change
it: ``key=value`` sets a value, ``group/sub=option`` (or ``group.sub=option``) swaps in a config file.
Evaluation is the training run's own (``translearn.evaluation``), on --device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from translearn.cli.config import config_dir, normalise_overrides
from translearn.cli.device import add_device_option
from translearn.cli.errors import report_user_errors
from translearn.content_keys import lift_old_keys
from translearn.errors import ConfigError
from translearn.run_record import add_allow_flag, check_data


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Apply ``key=value`` and ``group/option`` overrides to a saved run config."""
    for item in normalise_overrides(overrides):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        if "/" in key:
            path = config_dir() / key / f"{value}.yaml"
            if not path.is_file():
                raise ConfigError(f"override {item!r}: no config file {path}", config_key=key)
            node = OmegaConf.load(path)
            node.pop("defaults", None)
            OmegaConf.update(cfg, key.replace("/", "."), node, merge=False)
        else:
            if key.startswith("+"):  # a new key, as translearn-train's +key=value
                key = key[1:]
            else:
                check_known_key(cfg, key, item)
            OmegaConf.update(cfg, key, yaml.safe_load(value) if value else value, merge=False)
    return cfg


def check_known_key(cfg: DictConfig, key: str, item: str) -> None:
    """Refuse ``key=value`` for a key that is neither in the run's saved config nor in today's default config
    (a key added since the run was made): a typo such as ``evaluation.repeat=keep`` would otherwise change
    nothing, silently. ``+key=value`` adds a key on purpose."""
    missing = object()
    if OmegaConf.select(cfg, key, default=missing) is not missing:
        return
    from translearn.cli.config import compose

    if OmegaConf.select(compose([]), key, default=missing) is not missing:
        return
    raise ConfigError(f"override {item!r}: key {key!r} is not in the run's config (RUN/.hydra/config.yaml); check "
                      f"the spelling, or add a new key with +{item}", config_key=key)


def load_run_config(run: Path, overrides: list[str]) -> DictConfig:
    saved = run / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no .hydra/config.yaml)")
    try:
        cfg = OmegaConf.load(saved)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        detail = str(err).replace("\n", " ")
        raise ConfigError(f"{saved} is not a readable run config (broken YAML: {detail[:160]})",
                          file=saved) from None
    if not isinstance(cfg, DictConfig) or "paths" not in cfg or "data" not in cfg:
        raise ConfigError(f"{saved} is not a run config written by translearn-train (it is empty or lacks "
                          "data/paths)", file=saved)
    cfg.paths.output_dir = str(run)
    lift_old_keys(cfg.get("model"))  # a run made before model.content: its content keys move into the node
    return apply_overrides(cfg, overrides)


def pick_checkpoint(run: Path, choice: str) -> Path:
    """The checkpoint to evaluate: a given path, ``last``, or ``best`` (``metrics.json``'s
    ``best_checkpoint``, relative to ``run`` so a copied run folder evaluates its own file)."""
    if choice not in ("best", "last"):
        return Path(choice)
    if choice == "last":
        return run / "checkpoints" / "last.ckpt"
    metrics = run / "metrics.json"
    best = json.loads(metrics.read_text()).get("best_checkpoint") if metrics.is_file() else None
    # Older runs recorded an absolute path: the file of that name in this folder comes first.
    candidates = [run / best] if best and not Path(best).is_absolute() else \
        [run / "checkpoints" / Path(best).name, Path(best)] if best else []
    for path in candidates:
        if path.is_file():
            return path
    found = sorted((run / "checkpoints").glob("best-*.ckpt"))
    if not found:
        raise FileNotFoundError(f"no best checkpoint in {run / 'checkpoints'} (give --checkpoint last or a path)")
    return found[-1]


@report_user_errors("translearn-eval")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="translearn-eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run", type=Path, help="a run folder written by translearn-train")
    parser.add_argument("overrides", nargs="*", help="config overrides (see above)")
    parser.add_argument("--checkpoint", default="best", help="best (default), last, or a .ckpt path")
    parser.add_argument("--split", choices=["valid", "test", "both"], default="both")
    parser.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    add_device_option(parser)
    add_allow_flag(parser)
    args = parser.parse_args(argv)

    from translearn.build import build_datamodule, build_model, build_run_data, build_strategy
    from translearn.checkpoint_check import load_checked
    from translearn.evaluation.device import resolve_device, trainer_device
    from translearn.report import format_metrics

    device = resolve_device(args.device)
    cfg = load_run_config(args.run, args.overrides)
    ckpt = pick_checkpoint(args.run, args.checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--checkpoint: checkpoint {ckpt} does not exist")
    prepared = build_run_data(cfg)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared), for_loading=True)  # never trains
    note = check_data(load_checked(ckpt, strategy), ckpt, prepared, args.run, args.allow_other_data)
    if note:
        print(f"translearn-eval: warning: {note}", file=sys.stderr)
    datamodule = build_datamodule(cfg, prepared, strategy)
    import pytorch_lightning as pl

    trainer = pl.Trainer(**trainer_device(device), logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    results: dict[str, float] = {}
    if args.split in ("valid", "both"):
        for part in trainer.validate(strategy, datamodule=datamodule, verbose=False):  # one per protocol
            results.update(part)
    if args.split in ("test", "both"):
        for part in trainer.test(strategy, datamodule=datamodule, verbose=False):
            results.update(part)
    results = {k: float(v) for k, v in sorted(results.items())}
    print(format_metrics(results, title=f"{args.run} ({ckpt.name})"))
    if args.out:
        args.out.write_text(json.dumps({"checkpoint": str(ckpt), "repeats": strategy.repeats,
                                        **({"data_mismatch": note} if note else {}), **results},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
