"""How a source stage is trained (``strategy.stage``): ``StageSpec`` and ``stage_spec(cfg)``, its values checked
and its batch size defaulted to the main run's."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf

from translearn.data.prepared import PreparedData
from translearn.errors import ConfigError


@dataclass(frozen=True)
class StageSpec:
    """How the stage model is trained.

    domains:         ``sources`` (source domains only) or ``all`` (sources + target training rows, joint)
    max_epochs:      at most this many passes over the largest stage domain's training rows
    patience:        epochs without a better validation value of the stage's monitor (the main run's metric,
                     on the validated domain) before the stage stops (its best checkpoint is kept); None
                     trains ``max_epochs`` on all rows, without a validation slice
    min_steps:       optimiser steps before early stopping may end the stage (experiments/README.md, the
                     defaults study: sparse domains have few steps per epoch)
    validate:        the domain whose slice validates the stage; None: the target under ``all`` (the
                     teacher's job is to score target items), the first source under ``sources``
    batch_size:      training rows (labelled positions for sequence models) per step; None: 2048 for id
                     models, 256 for sequence models (the CLI passes the main run's)
    lam:             target weight when ``domains='all'`` (the stage is a ``Joint`` run: ``loss = loss_s + lam *
                     loss_t``, ``t`` the validated domain)
    embedding_dim:   the stage model's embedding size, when it differs from the target model's (a larger
                     teacher for distillation); None keeps the model config's
    """

    domains: str = "sources"
    max_epochs: int = 200
    patience: int | None = 20
    min_steps: int = 1000
    validate: str | None = None
    batch_size: int | None = None
    eval_batch_size: int = 512
    num_negatives: int = 1
    lam: float = 1.0
    embedding_dim: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.domains not in ("sources", "all"):
            raise ValueError(f"strategy.stage.domains must be 'sources' or 'all', got {self.domains!r}")
        if not math.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"strategy.stage.lam must be a finite number >= 0, got {self.lam}")
        if self.max_epochs < 1:
            raise ValueError(f"strategy.stage.max_epochs must be >= 1, got {self.max_epochs}")
        if self.min_steps < 0:
            raise ValueError(f"strategy.stage.min_steps must be >= 0, got {self.min_steps}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"strategy.stage.patience must be >= 1 or null, got {self.patience}")
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"strategy.stage.{name} must be >= 1, got {value}")

    def train_domains(self, prepared: PreparedData) -> list[str]:
        if not prepared.sources:
            raise ValueError("this strategy starts from a source-stage model, but data.source_domains is empty")
        return list(prepared.sources) + ([prepared.target] if self.domains == "all" else [])

    def validate_domain(self, prepared: PreparedData) -> str:
        domains = self.train_domains(prepared)
        name = self.validate or (prepared.target if self.domains == "all" else prepared.sources[0])
        if name not in domains:
            raise ValueError(f"strategy.stage.validate={name!r} is not a domain the stage trains on "
                             f"({', '.join(domains)})")
        if self.domains == "all" and name != prepared.target and self.lam != 1.0:
            raise ValueError(f"strategy.stage.lam={self.lam} weights the target, but the stage validates on "
                             f"{name!r}, which its Joint run would weight instead; leave lam at 1 or validate on "
                             f"the target")
        return name


def stage_spec(cfg: DictConfig) -> StageSpec:
    """``cfg.strategy.stage`` as a ``StageSpec`` (a one-line ConfigError when a value is wrong); its batch size
    defaults to the main run's (``data.batch_size``, or ``data.sequence_batch_size`` for sequence models)."""
    try:
        spec = StageSpec(**plain(cfg.strategy.get("stage") or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key 'strategy.stage': {err}", config_key="strategy.stage") from err
    if spec.batch_size is None:
        spec = replace(spec, batch_size=_main_batch_size(cfg))
    return spec


def _main_batch_size(cfg: DictConfig) -> int:
    from translearn.build import _instantiate, train_batch_size
    from translearn.models.factory import accepts

    factory = _instantiate(cfg.model, "model")
    # a tiny model that tells the family (the id tower: it reads no content)
    probe = factory(num_users=1, num_items={str(cfg.data.target_domain): 1},
                    **({"content": None} if accepts(factory, "content") else {}))
    return train_batch_size(cfg, probe)


def plain(node: Any) -> Any:
    """A config node as plain Python containers (resolved); anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
