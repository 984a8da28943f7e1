"""A finished run, rebuilt from its folder: config, prepared data, and the strategy with the checkpoint's weights.

The same reading as ``translearn-eval``: ``RUN/.hydra/config.yaml`` (plus overrides) rebuilds the data and
the model, and the checkpoint (``best``, ``last`` or a path) is checked against the model before loading.
The strategy is then moved to the tool's ``--device`` (``translearn.evaluation.device``), where the tools
score and encode.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
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
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where the strategy is
    data_note: str | None = None  # the data differs from the checkpoint's, used anyway (--allow-other-data)

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
                "target": self.prepared.target, "data_key": self.prepared.key,
                "data_split_key": self.prepared.split_key,
                **({"data_mismatch": self.data_note} if self.data_note else {})}


def load_run(run: str | Path, checkpoint: str = "best", overrides: Sequence[str] = (),
             device: str | torch.device | None = "cpu", allow_other_data: bool = False) -> LoadedRun:
    """Rebuild the run in folder ``run``, load its ``checkpoint`` (``best``, ``last`` or a ``.ckpt`` path) and
    move the strategy to ``device`` (None: the GPU when there is one, else the CPU). A CheckpointError when
    the checkpoint was trained on other data than the data as prepared now, unless ``allow_other_data``
    (then ``data_note`` says so, and a warning is printed)."""
    from translearn.build import build_model, build_run_data, build_strategy
    from translearn.checkpoint_check import load_checked
    from translearn.cli.evaluate import load_run_config, pick_checkpoint
    from translearn.evaluation.device import resolve_device
    from translearn.run_record import check_data

    where = device if isinstance(device, torch.device) else resolve_device(device)
    run = Path(run)
    cfg = load_run_config(run, list(overrides))
    ckpt = pick_checkpoint(run, checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"--checkpoint: checkpoint {ckpt} does not exist")
    prepared = build_run_data(cfg)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared), for_loading=True)  # never trains
    note = check_data(load_checked(ckpt, strategy), ckpt, prepared, run, allow_other_data)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    strategy.to(where).eval()
    return LoadedRun(run, cfg, prepared, strategy, ckpt, where, note)
