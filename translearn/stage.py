"""The source stage: a model trained before the transfer step, cached by content hash.

Fine-tuning, feature reuse and mapping start from a model trained on the source domains; distillation
and fusion use a model that can also score target items (trained on sources + target training data,
i.e. a joint model). ``stage_model`` trains it once and caches it under a key made of the prepared
data's key, the model and training settings and the seed, so a sweep over the transfer step's own knobs
(lambda, alpha, freeze lists, ...) reads the same stage model. Writes are atomic.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from translearn.cache import content_key, read_entry, write_entry
from translearn.data.datamodule import TrainBatches
from translearn.data.prepared import PreparedData
from translearn.data.sequence_data import HistorySpec, SequenceTrainData, StreamBatchSampler
from translearn.errors import DivergedError
from translearn.models.recommender import Recommender

log = logging.getLogger(__name__)
STAGE_VERSION = 2  # 2: the largest domain sets the epoch of multi-domain stages


@dataclass(frozen=True)
class StageSpec:
    """How the stage model is trained.

    domains:       ``sources`` (source domains only) or ``all`` (sources + target training rows, joint)
    max_epochs:    passes over the largest stage domain's training rows (the others proportionally)
    lam:           target weight when ``domains='all'`` (``loss = loss_s + lam * loss_t``)
    embedding_dim: the stage model's embedding size, when it differs from the target model's (a larger
                   teacher for distillation); None keeps the model config's
    """

    domains: str = "sources"
    max_epochs: int = 20
    batch_size: int = 2048
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

    def train_domains(self, prepared: PreparedData) -> list[str]:
        if not prepared.sources:
            raise ValueError("this strategy starts from a source-stage model, but data.source_domains is empty")
        return list(prepared.sources) + ([prepared.target] if self.domains == "all" else [])


ModelFactory = Callable[..., Recommender]


def build_stage_model(factory: ModelFactory, prepared: PreparedData, spec: StageSpec) -> Recommender:
    """An untrained stage model with item towers for the stage's domains."""
    kwargs = {"embedding_dim": spec.embedding_dim} if spec.embedding_dim else {}
    return factory(num_users=prepared.num_users,
                   num_items={d: prepared.num_items(d) for d in spec.train_domains(prepared)}, **kwargs)


def load_model_weights(model: Recommender, path: str | Path) -> Recommender:
    """Load a stage ``model.pt`` or a training run's Lightning checkpoint (its ``model.*`` weights).

    Weights the file has beyond the model's (e.g. a joint run's extra item towers) are ignored; weights
    the model needs but the file lacks are an error that lists them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"strategy.source_ckpt: no file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a Lightning checkpoint of a translearn run
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise ValueError(f"strategy.source_ckpt {path} lacks weights the stage model needs: {', '.join(missing)}")
    wrong = [k for k, v in model.state_dict().items() if state[k].shape != v.shape]
    if wrong:
        raise ValueError(f"strategy.source_ckpt {path} has weights of other shapes for: {', '.join(wrong)} "
                         "(set strategy.stage.embedding_dim to the checkpoint's embedding size)")
    model.load_state_dict({k: state[k] for k in model.state_dict()})
    return model


def train_stage(model: Recommender, prepared: PreparedData, spec: StageSpec,
                optimizer: Callable[..., torch.optim.Optimizer], loss: torch.nn.Module) -> list[float]:
    """Train ``model`` on the stage's domains with a plain loop (no Trainer, so it also runs inside a DDP
    worker). Returns the mean training loss of each epoch."""
    from translearn.strategies.joint import Joint
    from translearn.strategies.source_only import SourceOnly

    if spec.domains == "all":
        task = Joint(model, prepared.target, list(prepared.sources), lam=spec.lam, loss=loss)
    else:
        task = SourceOnly(model, prepared.target, list(prepared.sources), loss=loss)
    sequences = HistorySpec.of(model)
    if sequences is None:
        data = TrainBatches(prepared, task.train_domains, spec.num_negatives, spec.seed)
        loader = DataLoader(data, batch_size=spec.batch_size, shuffle=True, collate_fn=lambda b: b,
                            generator=torch.Generator().manual_seed(spec.seed))
    else:  # one-pass sequence batches (a sequence model's stage)
        negatives = spec.num_negatives if getattr(loss, "needs_negatives", True) else 0
        seq_data = SequenceTrainData(prepared, sequences, task.train_domains, negatives, spec.seed)
        sampler = StreamBatchSampler(seq_data, spec.batch_size, spec.seed)
        loader = DataLoader(seq_data, batch_sampler=sampler, collate_fn=lambda b: b)
    opt = optimizer(task.param_groups())
    history = []
    model.train()
    for epoch in range(spec.max_epochs):
        if sequences is not None:
            sampler.set_epoch(epoch)
        began = time.perf_counter()
        total, rows = 0.0, 0
        for step, batch in enumerate(loader):
            out = task.compute_loss(batch)
            if sequences is not None:
                model.release()
            if not torch.isfinite(out["loss"].detach()):
                bad = [n for n, v in out.items() if n != "loss" and not torch.isfinite(v.detach()).all()]
                raise DivergedError(f"the source stage diverged at epoch {epoch}, step {step}: non-finite "
                                    f"{', '.join(bad or ['loss'])}; lower optimizer.lr")
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            size = sum(len(part["users"]) for part in {id(p): p for p in batch.values()}.values())
            total, rows = total + out["loss"].item() * size, rows + size
        history.append(total / max(rows, 1))
        log.info("stage epoch %d/%d loss %.4f %.1fs", epoch + 1, spec.max_epochs, history[-1],
                 time.perf_counter() - began)
    model.eval()
    return history


def stage_model(factory: ModelFactory, prepared: PreparedData, spec: StageSpec,
                optimizer: Callable[..., torch.optim.Optimizer], loss: torch.nn.Module,
                cache_dir: str | Path | None = None, describe: Mapping[str, Any] | None = None,
                checkpoint: str | Path | None = None) -> Recommender:
    """The stage model: from ``checkpoint`` if given, else from the cache, else trained (and cached).

    ``describe`` holds JSON-able descriptions of the factory, optimiser and loss settings for the cache
    key (the CLI passes the resolved config nodes); without it the model is trained but not cached.
    """
    # The stage draws from its own seeded RNG stream, so the run that trains it and the runs that read
    # it from the cache leave the global RNG in the same state (and produce the same target model).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = build_stage_model(factory, prepared, spec)
        if checkpoint:
            return load_model_weights(model, checkpoint)
        entry = None
        if cache_dir is not None and describe is not None:
            key = content_key({"version": STAGE_VERSION, "data": prepared.key, "spec": asdict(spec), **describe})
            entry = Path(cache_dir) / "stage" / key[:24]
            cached = read_entry(entry, lambda e: load_model_weights(model, e / "model.pt"), "source-stage model")
            if cached is not None:
                log.info("source-stage model read from cache %s", entry)
                return cached
        start = time.time()
        losses = train_stage(model, prepared, spec, optimizer, loss)
    log.info("source stage (%s, %d epochs) trained in %.1fs, final loss %.4f", spec.domains, spec.max_epochs,
             time.time() - start, losses[-1])
    if entry is not None:
        def write(folder: Path) -> None:
            torch.save(model.state_dict(), folder / "model.pt")
            meta = {"spec": asdict(spec), "losses": losses, "data_key": prepared.key, **(describe or {})}
            (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

        write_entry(entry, write)
    return model
