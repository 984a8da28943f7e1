"""A source stage's cache entry: its content key (``stage_entry``), the weights it holds (``load_model_weights``,
``load_entry``) and what a consuming run records about it (``stage_record``)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from translearn.cache import content_key
from translearn.data.prepared import PreparedData
from translearn.models.recommender import Recommender
from translearn.stage.spec import StageSpec, plain

log = logging.getLogger(__name__)

# 2: the largest domain sets the epoch of multi-domain stages; 3: Lightning trainer, early stopping on a
# validation slice of the stage's own training rows, best epoch's weights; 4: content towers (MF/NCF text,
# id_text, image) are validated on their current item table (a fused Adam step left a stale one cached);
# 5: the stage is a run of the main loop (Joint / TargetOnly over the stage view, the main run's metric and
# mode, the trainer's settings in the key); the entry is its run folder with its best checkpoint.
# Not bumped for the model.content node: neither the entry nor its key changed (``_model_in_key``).
STAGE_VERSION = 5
TRAINER_KEYS = ("accelerator", "devices", "strategy", "precision", "num_nodes")  # taken from the main run
# trainer keys that change neither the stage's weights nor its epochs (left out of its key, with the devices)
_NOT_IN_KEY = (*TRAINER_KEYS, "max_epochs", "enable_progress_bar", "enable_model_summary", "log_every_n_steps")


@dataclass
class Stage:
    """A source-stage model ready for the transfer step, and what the consuming run records about it
    (``stage_dir`` and ``stage/...`` keys of its ``metrics.json``)."""

    model: Recommender
    record: dict[str, Any]


def load_model_weights(model: Recommender, path: str | Path) -> Recommender:
    """Load a ``model.pt`` state dict or a run's or stage's Lightning checkpoint (its ``model.*`` weights).

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


def stage_entry(cfg: DictConfig, prepared: PreparedData, spec: StageSpec, shell: Recommender) -> Path:
    """The stage's cache folder, ``<paths.cache_dir>/stage/<key>`` (``<run folder>/stage/<key>`` without a cache):
    the key covers the prepared data, the stage spec, the model, optimiser, loss and trainer settings (not the
    devices) and a content tower's frozen inputs, so the same stage is found again on any machine."""
    trainer = {k: v for k, v in (plain(cfg.get("trainer")) or {}).items() if k not in _NOT_IN_KEY}
    frozen = frozen_inputs_digest(shell)  # content towers: the features the stage model reads
    key = content_key({"version": STAGE_VERSION, "data": prepared.key, "spec": asdict(spec),
                       "model": _model_in_key(cfg.model), "optimizer": plain(cfg.optimizer), "loss": plain(cfg.loss),
                       "trainer": trainer, **({"frozen_inputs": frozen} if frozen else {})})
    cache = cfg.paths.get("cache_dir")  # no cache (paths.cache_dir=null): the stage lives in the run's folder
    return Path(cache if cache is not None else cfg.paths.output_dir) / "stage" / key[:24]


def _model_in_key(model: Any) -> Any:
    """The ``model`` node as the stage key hashes it: the ``model.content`` keys at its top level, where they lay
    before that node, so a stage cached before the move is found again (same settings, same key)."""
    node = plain(model)
    if isinstance(node, dict) and isinstance(node.get("content"), dict):
        node = {**{k: v for k, v in node.items() if k != "content"}, **node["content"]}
    return node


def frozen_inputs_digest(model: torch.nn.Module) -> str | None:
    """sha256 of the model's non-persistent buffers (the frozen content features of its item towers),
    which a saved state_dict does not carry; None when it has none (id models: their keys stay as before)."""
    persistent = set(model.state_dict())
    digest, seen = hashlib.sha256(), False
    for name, buf in model.named_buffers():
        if name not in persistent:
            seen = True
            digest.update(name.encode())
            digest.update(buf.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest() if seen else None


def load_entry(entry: Path, shell: Recommender) -> Stage:
    """The stage in the cache entry ``entry``, its best checkpoint loaded into ``shell``."""
    metrics = json.loads((entry / "metrics.json").read_text())
    meta = json.loads((entry / "meta.json").read_text())
    model = load_model_weights(shell, entry / meta["checkpoint"])
    log.info("source-stage model read from cache %s", entry)
    return Stage(model.cpu().eval(), stage_record(entry, metrics))


def stage_record(entry: Path | None, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What the consuming run's ``metrics.json`` says about its stage: ``stage_dir`` and ``stage/<key>`` for
    the stage's validation metrics, ``epochs_run`` and ``best_epoch``."""
    keep = {k: v for k, v in metrics.items() if k.startswith("val/") or k in ("epochs_run", "best_epoch")}
    return {"stage_dir": str(entry) if entry is not None else None, **{f"stage/{k}": v for k, v in keep.items()}}
