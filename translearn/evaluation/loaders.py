"""Evaluation loaders by name: what each validation / test dataloader of a data module holds.

The data module publishes ``eval_loaders`` (one ``EvalLoader`` per dataloader, in its order, the same
for validation and test); the evaluator looks a batch's metric set up by the loader's NAME, never by
counting loaders. A loader's name is the middle of its metric keys: ``<stage>/<name>/<metric>``:

=================  ===========================================  =================================
name               rows                                          keys
=================  ===========================================  =================================
``target``         the target's held-out rows, primary protocol  ``val/target/ndcg@10``
``target/sampled`` the same rows against sampled negatives       ``test/target/sampled/ndcg@10``
  (``evaluation.sampled_negatives``)
``<source>``       a source's held-out rows, full ranking        ``test/arts/ndcg@10``
  (``evaluation.domains``)
=================  ===========================================  =================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("full", "sampled")
TARGET = "target"
TARGET_SAMPLED = "target/sampled"


@dataclass(frozen=True)
class EvalLoader:
    """One evaluation dataloader: ``name`` (the key's middle part), the evaluated ``domain`` and its
    ``protocol`` (``full``: ranking against every item, known items masked; ``sampled``: each row's
    held-out item against its sampled negatives, ``batch["candidates"]``)."""

    name: str
    domain: str
    protocol: str = "full"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"EvalLoader {self.name!r}: protocol must be one of {', '.join(PROTOCOLS)}, "
                             f"got {self.protocol!r}")

    def key(self, stage: str, metric: str) -> str:
        """``<stage>/<name>/<metric>``, e.g. ``val/target/ndcg@10``."""
        return f"{stage}/{self.name}/{metric}"


def eval_loaders(target: str, primary: str = "full", sampled: bool = False,
                 sources: Sequence[str] = ()) -> list[EvalLoader]:
    """The loaders of a stage in the data module's order: the target's primary protocol, its sampled
    second protocol if any, then each evaluated source (full ranking)."""
    loaders = [EvalLoader(TARGET, target, primary)]
    if sampled:
        loaders.append(EvalLoader(TARGET_SAMPLED, target, "sampled"))
    loaders += [EvalLoader(d, d, "full") for d in sources]
    names = [loader.name for loader in loaders]
    if len(set(names)) != len(names):
        raise ValueError(f"evaluation loaders must have distinct names, got {names} (a source domain named "
                         f"{TARGET!r} would share the target's keys)")
    return loaders


def trainer_loaders(trainer: Any, stage: str, default: Sequence[EvalLoader]) -> list[EvalLoader]:
    """The loaders of the running ``stage`` (``val`` or ``test``): the data module's ``eval_loaders``; bare
    dataloaders have no names, so one is taken as ``default[0]`` (the target) and several are refused."""
    published = getattr(_loader_source(trainer), "eval_loaders", None)
    count = len(trainer.num_val_batches if stage == "val" else trainer.num_test_batches)
    loaders = list(published) if published is not None else list(default)[:1]
    if len(loaders) != count:
        where = "the data module publishes" if published is not None else "bare dataloaders give"
        raise RuntimeError(f"{stage}: {count} dataloaders, but {where} {len(loaders)} named evaluation loaders "
                           f"({', '.join(loader.name for loader in loaders)}); a data module with several "
                           "evaluation dataloaders must name them (eval_loaders)")
    return loaders


def _loader_source(trainer: Any) -> Any:
    """Where the running evaluation's dataloaders come from: the data module, or the bare dataloaders given to
    ``validate`` / ``test`` (``trainer.datamodule`` outlives the call that attached it, so it cannot tell)."""
    try:
        return trainer._evaluation_loop._data_source.instance  # Lightning 2.x
    except (AttributeError, RuntimeError):
        return getattr(trainer, "datamodule", None)
