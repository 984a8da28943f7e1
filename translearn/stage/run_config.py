"""The stage's own run config, derived from the main run's (``stage_config``), and the names its metrics are
logged under (``stage_monitor``, ``name_validated_domain``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from translearn.data.prepared import PreparedData
from translearn.evaluation.loaders import TARGET
from translearn.metrics.direction import HIGHER_IS_BETTER
from translearn.stage.spec import StageSpec

STRATEGIES = "translearn.strategies."


def stage_monitor(cfg: DictConfig, domain: str) -> str:
    """``val/<domain>/<metric>``: the main run's selection metric (its last part, e.g. ``ndcg@10`` or
    ``rmse``), on the domain the stage validates on."""
    return f"val/{domain}/{str(cfg.monitor).rsplit('/', 1)[-1]}"


def stage_config(cfg: DictConfig, prepared: PreparedData, spec: StageSpec, folder: str | Path,
                 validated: bool = True) -> DictConfig:
    """The stage's run config, derived from the main run's ``cfg``: what ``fit_run`` trains the stage with.

    Same model (``strategy.stage.embedding_dim`` if set), optimiser, loss and trainer (devices, precision,
    ...); ``Joint`` over the stage's domains (``loss = loss_s + lam * loss_t``, ``t`` the validated domain) or
    ``TargetOnly`` on a single domain; no scheduler (as the stage always had); the spec's epochs, batch size,
    negatives and seed; the monitor ``stage_monitor`` with its mode from the metric; the selection,
    early-stopping and epoch-log callbacks of ``conf/callbacks/default.yaml`` with the spec's patience and
    min_steps; a CSV log; the run folder ``folder``."""
    validate = spec.validate_domain(prepared)
    domains = spec.train_domains(prepared)
    monitor = stage_monitor(cfg, validate)
    metric = monitor.rsplit("/", 1)[-1]
    name, _, k = metric.partition("@")
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain["paths"]["output_dir"] = str(folder)
    plain.update(seed=spec.seed, resume=None, monitor=monitor, optimized_metric=monitor, scheduler=None)
    plain["data"].update(batch_size=spec.batch_size, sequence_batch_size=spec.batch_size,
                         eval_batch_size=spec.eval_batch_size, num_negatives=spec.num_negatives)
    plain["evaluation"] = {"ks": [int(k) if k else 10], "metrics": [name if name in HIGHER_IS_BETTER else "ndcg"],
                           "repeats": "mask", "domains": ["target"], "sampled_negatives": None}
    plain["strategy"] = ({"_target_": STRATEGIES + "Joint", "lam": spec.lam if validate == prepared.target else 1.0,
                          "weighting": "fixed"} if len(domains) > 1 else {"_target_": STRATEGIES + "TargetOnly"})
    if spec.embedding_dim:
        plain["model"]["embedding_dim"] = spec.embedding_dim
    plain["trainer"]["max_epochs"] = spec.max_epochs
    if not validated:
        plain["trainer"]["limit_val_batches"] = 0
    callbacks = OmegaConf.to_container(OmegaConf.load(_conf_dir() / "callbacks" / "default.yaml"), resolve=False)
    callbacks.pop("last_checkpoint")  # a stage is not resumed: its best checkpoint is what it leaves
    if validated:
        callbacks["early_stopping"].update(patience=spec.patience, min_steps=spec.min_steps)
    else:  # no validation slice: the last epoch's weights, in checkpoints/last.ckpt
        callbacks.pop("early_stopping")
        callbacks["model_checkpoint"].update(monitor=None, filename="last", mode="min")
    callbacks["epoch_log"]["name"] = "source stage"  # "source stage epoch 3/200 loss ... val/arts/ndcg@10 ..."
    plain["callbacks"] = callbacks
    plain["logger"] = {"csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": "${paths.output_dir}",
                               "name": "csv", "version": ""}} if plain.get("logger") else None
    return OmegaConf.create(plain)


def _conf_dir() -> Path:
    from translearn.cli.config import config_dir

    return Path(config_dir())


def name_validated_domain(strategy: Any, domain: str) -> None:
    """Log the stage's metrics under the domain it validates on (``val/arts/ndcg@10``), not ``val/target``:
    the stage view's target role is whichever domain holds the validation slice."""
    strategy.evaluator.labels[TARGET] = domain
