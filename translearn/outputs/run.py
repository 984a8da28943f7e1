"""A finished run, rebuilt from its folder: config, prepared data, and the strategy with the checkpoint's weights.

The same reading as ``translearn-eval``: ``RUN/.hydra/config.yaml`` (plus overrides) rebuilds the data and
the model, and the checkpoint (``best``, ``last`` or a path) is checked against the model before loading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from translearn.data.prepared import PreparedData
from translearn.errors import UserError
from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy


class OutputError(UserError, ValueError):
    """Bad input to an output tool (unknown user or domain, a constant attribute, ...); one line."""


@dataclass
class LoadedRun:
    """A run folder's trained strategy (in eval mode) and the data it was trained on."""

    run: Path
    cfg: DictConfig
    prepared: PreparedData
    strategy: TransferStrategy
    checkpoint: Path

    @property
    def model(self) -> Recommender:
        return self.strategy.model

    @property
    def family(self) -> str:
        """``sequence`` for models whose query is a history (``needs_history > 0``), else ``id``."""
        return "sequence" if self.model.needs_history else "id"

    def domain(self, name: str | None, option: str = "--domain") -> str:
        """``name`` checked against the model's domains; None gives the target domain."""
        if name is None:
            return self.prepared.target
        if name not in self.model.domains:
            raise OutputError(f"{option}: the model of {self.run} has no domain {name!r}; it has "
                              f"{', '.join(self.model.domains)}")
        return name

    def describe(self) -> dict:
        """Where the vectors come from, for the JSON files the tools write."""
        return {"run": str(self.run.resolve()), "checkpoint": str(self.checkpoint.resolve()),
                "model": str(self.cfg.model.get("_target_", "?")), "family": self.family,
                "head": type(self.model.head).__name__, "strategy": type(self.strategy).__name__,
                "target": self.prepared.target, "data_key": self.prepared.key}


def load_run(run: str | Path, checkpoint: str = "best", overrides: Sequence[str] = ()) -> LoadedRun:
    """Rebuild the run in folder ``run`` and load its ``checkpoint`` (``best``, ``last`` or a ``.ckpt`` path)."""
    from translearn.build import build_model, build_run_data, build_strategy
    from translearn.checkpoint_check import load_checked
    from translearn.cli.evaluate import load_run_config, pick_checkpoint

    run = Path(run)
    cfg = load_run_config(run, list(overrides))
    ckpt = pick_checkpoint(run, checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--checkpoint: checkpoint {ckpt} does not exist")
    prepared = build_run_data(cfg)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared), for_loading=True)  # never trains
    load_checked(ckpt, strategy)
    strategy.eval()
    return LoadedRun(run, cfg, prepared, strategy, ckpt)
