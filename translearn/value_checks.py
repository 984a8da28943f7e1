"""Range checks of config values that would otherwise fail deep inside torch or NumPy with a traceback
(``data.batch_size=0``, ``model.dropout=1.5``, ``seed=abc``, ...). Called by ``checks.check_config``; each
failure is a ``ConfigError`` naming the key, the range and the value given. A key a config does not have
(a model without ``dropout``) is not checked."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from translearn.errors import ConfigError

_MISSING = object()
# key -> smallest whole number allowed
WHOLE = {"seed": None, "data.seed": None, "data.batch_size": 1, "data.eval_batch_size": 1,
         "data.sequence_batch_size": 1, "data.num_negatives": 0, "model.embedding_dim": 1, "model.max_history": 1,
         "model.num_heads": 1, "model.num_layers": 1, "model.inner_size": 1, "data.dataset.num_users": 1,
         "evaluation.max_scores": 1}
WHOLE_LISTS = {"data.dataset.num_items": 1, "model.hidden_dims": 1}
# key -> (low, high) of a number in [low, high)
FRACTIONS = {"model.dropout": (0.0, 1.0)}
CHOICES = {"model.history_scope": ("target", "all")}


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_resolution_failure=False)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_values(cfg: DictConfig) -> None:
    """ConfigError for the first value out of its range (see the tables above)."""
    for key, low in WHOLE.items():
        value = _get(cfg, key)
        if value is _MISSING or value is None:
            continue
        if not _whole(value) or (low is not None and value < low):
            what = "a whole number" if low is None else f"a whole number >= {low}"
            raise ConfigError(f"config key {key!r} must be {what}, got {value!r}", config_key=key)
    for key, low in WHOLE_LISTS.items():
        value = _get(cfg, key)
        if value is _MISSING or value is None:
            continue
        values = list(value) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else [value]
        if not all(_whole(v) and v >= low for v in values):
            raise ConfigError(f"config key {key!r} must hold whole numbers >= {low}, got "
                              f"{OmegaConf.to_container(value) if OmegaConf.is_list(value) else value!r}",
                              config_key=key)
    for key, (low, high) in FRACTIONS.items():
        value = _get(cfg, key)
        if value is _MISSING or value is None:
            continue
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
        if not low <= number < high:
            raise ConfigError(f"config key {key!r} must be a number >= {low:g} and < {high:g}, got {value!r}",
                              config_key=key)
    for key, options in CHOICES.items():
        value = _get(cfg, key)
        if value is _MISSING or value is None:
            continue
        if value not in options:
            raise ConfigError(f"config key {key!r} must be one of {', '.join(options)}, got {value!r}",
                              config_key=key)
