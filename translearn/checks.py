"""``check_config(cfg)``: the config checks that need no data, run before anything is built or trained.

Each failure is a ``ConfigError`` naming the key and what was expected, so a typo costs seconds, not a
finished epoch (a monitor metric that is never logged is otherwise found only after the first one).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from translearn.content_keys import check_no_old_keys
from translearn.errors import ConfigError
from translearn.value_checks import check_values


def check_config(cfg: DictConfig) -> None:
    """Raise a ConfigError for the first problem found: an old content key (``model.item_tower``, now
    ``model.content.item_tower``), an unset required key, a learning rate that is not a
    finite number >= 0 (0 keeps the weights fixed, a legal control run), a bad ``trainer.max_epochs``, a
    ``monitor`` metric the run never logs, or an output/cache path that is a file."""
    check_no_old_keys(cfg.get("model"))  # model.item_tower in a user's own config: model.content.item_tower now
    _no_missing_values(cfg)
    check_values(cfg)  # out-of-range values (batch size 0, dropout 1.5, seed abc, ...)
    _finite_non_negative(cfg, "optimizer.lr")
    _max_epochs(cfg)
    _monitor_is_logged(cfg)
    _optimized_metric_is_validation(cfg)
    for key in ("paths.output_dir", "paths.cache_dir"):
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        if value and Path(str(value)).exists() and not Path(str(value)).is_dir():
            raise ConfigError(f"config key {key!r}: {value} is a file; expected a folder (or a path not yet there)",
                              config_key=key)


def _no_missing_values(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = " ".join(f"{k}=..." for k in missing)
        raise ConfigError(f"config key {missing[0]!r} has no value (???) and is required; set "
                          f"{'it' if len(missing) == 1 else 'all of ' + ', '.join(missing)} on the command line, "
                          f"e.g. {example}", config_key=missing[0])


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _finite_non_negative(cfg: DictConfig, key: str) -> None:
    if OmegaConf.select(cfg, key) is None:
        return
    value = OmegaConf.select(cfg, key)
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise ConfigError(f"config key {key!r} must be a finite number >= 0, got {value!r}", config_key=key)


def _max_epochs(cfg: DictConfig) -> None:
    value = OmegaConf.select(cfg, "trainer.max_epochs")
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not (value >= 0 or value == -1):
        raise ConfigError(f"config key 'trainer.max_epochs' must be a whole number >= 1 (0: no training, the "
                          f"model as built is evaluated, e.g. zero-shot after a source stage; -1: no limit), "
                          f"got {value!r}", config_key="trainer.max_epochs")


def logged_eval_keys(cfg: DictConfig) -> set[str]:
    """The ``val/target/...`` keys the run's strategy logs at each validation, from the evaluation config."""
    from translearn.metrics.ranking import ranking_metrics

    try:
        names = set(ranking_metrics(list(cfg.evaluation.ks), list(cfg.evaluation.metrics)))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"config key 'evaluation': {err}", config_key="evaluation") from None
    loss = OmegaConf.select(cfg, "loss._target_")
    if loss and getattr(get_class(loss), "needs_ratings", False):
        names |= {"mae", "rmse"}
    return {f"val/target/{name}" for name in names}


def _optimized_metric_is_validation(cfg: DictConfig) -> None:
    name = cfg.get("optimized_metric")
    if name and str(name).startswith("test/"):
        raise ConfigError(f"config key 'optimized_metric': {name} is a test metric; a sweeper optimises a "
                          "validation metric (val/...), or the test split would choose the hyperparameters",
                          config_key="optimized_metric")


def _monitor_is_logged(cfg: DictConfig) -> None:
    monitor = cfg.get("monitor")
    if not monitor:
        return
    if str(monitor).startswith("test/"):
        raise ConfigError(f"config key 'monitor': {monitor} is a test metric; model selection uses the "
                          "validation split (val/...)", config_key="monitor")
    if not str(monitor).startswith("val/target/") or OmegaConf.select(cfg, "evaluation") is None:
        return  # another strategy's own keys (e.g. val/fusion/...) or training losses: not known here
    logged = logged_eval_keys(cfg)
    if monitor not in logged:
        raise ConfigError(f"config key 'monitor': {monitor} is never logged; with evaluation.ks="
                          f"{list(cfg.evaluation.ks)} and evaluation.metrics={list(cfg.evaluation.metrics)} the run "
                          f"logs {', '.join(sorted(logged))}", config_key="monitor")
