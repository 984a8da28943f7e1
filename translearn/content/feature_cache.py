"""Item feature matrices cached by content hash (text embeddings now; any frozen encoder's output).

An entry is ``<cache_dir>/features/<key[:24]>/`` with ``features.npy`` (float32 [rows, F]) and
``meta.json`` (the key's parts, for people), written by ``translearn.cache.write_entry`` (temp folder,
checksums, rename: a killed run leaves no half entry). The key is the sha256 of what determines the
vectors, e.g. the encoder's identity, the template and the exact strings encoded. On load the checksums,
dtype, shape and finiteness are checked; a bad entry is discarded with a warning and built again. Parallel
jobs on one machine hold ``entry_lock`` while building, so one job encodes and the others read its entry.
Every matrix read or built is also kept in memory (the only cache when ``cache_dir`` is None).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from translearn.cache import content_key, entry_lock, read_entry, write_entry

log = logging.getLogger(__name__)
VERSION = 1  # bump when the entry format or what a key means changes
FILE = "features.npy"

_FILE_DIGESTS: dict[tuple, str] = {}  # (folder, stat of every file) -> digest, so a model is hashed once


def strings_digest(texts: Sequence[str]) -> str:
    """sha256 of an exact list of strings (each length-prefixed, so ``["ab", "c"]`` != ``["a", "bc"]``)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def files_digest(folder: str | Path) -> str:
    """sha256 over the relative path and bytes of every file under ``folder`` (a model's weights and
    configs; ``__pycache__`` and hidden folders left out). Remembered per process while no file's size or
    modification time changes, so a 90 MB model is read once per process."""
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not _skipped(p.relative_to(folder)))
    stat = tuple((p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    memo = (str(folder), stat)
    if memo not in _FILE_DIGESTS:
        h = hashlib.sha256()
        for path, (name, _, _) in zip(files, stat, strict=True):
            h.update(name.encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        _FILE_DIGESTS[memo] = h.hexdigest()
    return _FILE_DIGESTS[memo]


def _skipped(rel: Path) -> bool:
    return any(part == "__pycache__" or part.startswith(".") for part in rel.parts)


class FeatureCache:
    """Feature matrices by content key, on disk under ``<cache_dir>/features/`` and in memory.

    cache_dir: the project's cache folder (``paths.cache_dir``); None keeps features in memory only
    """

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.folder = None if cache_dir is None else Path(cache_dir) / "features"
        self._memory: dict[str, np.ndarray] = {}

    def entry(self, parts: Mapping[str, Any]) -> tuple[str, Path | None]:
        """The content key of ``parts`` and its entry folder (None without a cache folder)."""
        key = content_key({"version": VERSION, **parts})
        return key, None if self.folder is None else self.folder / key[:24]

    def get(self, parts: Mapping[str, Any], rows: int, build: Callable[[], np.ndarray],
            what: str = "item features") -> np.ndarray:
        """The float32 [rows, F] matrix for ``parts``: from memory, else a verified disk entry, else
        ``build()`` (then stored). ``what`` names the matrix in log lines and warnings."""
        key, entry = self.entry(parts)
        if key in self._memory:
            return self._memory[key]
        with entry_lock(entry):  # parallel jobs: one builds, the others wait and read
            features = None
            if entry is not None:
                features = read_entry(entry, lambda e: _load(e, rows), what)
                if features is not None:
                    log.info("%s read from cache %s", what, entry)
            if features is None:
                features = checked(build(), rows, what)
                if entry is not None:
                    write_entry(entry, lambda folder: _save(folder, features, parts))
                    log.info("%s cached in %s", what, entry)
        features.setflags(write=False)
        self._memory[key] = features
        return features


def checked(features: Any, rows: int, what: str) -> np.ndarray:
    """``features`` as a C-contiguous float32 [rows, F] array; ValueError if it has another shape or a
    non-finite value (an encoder bug, never something to cache)."""
    arr = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if arr.ndim != 2 or arr.shape[0] != rows:
        raise ValueError(f"{what}: expected a [{rows}, F] matrix, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: {int((~np.isfinite(arr)).any(axis=1).sum())} row(s) have non-finite values")
    return arr


def _save(folder: Path, features: np.ndarray, parts: Mapping[str, Any]) -> None:
    np.save(folder / FILE, features, allow_pickle=False)
    meta = {"shape": list(features.shape), "dtype": str(features.dtype), "parts": parts}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + os.linesep)


def _load(folder: Path, rows: int) -> np.ndarray:
    """The verified entry's matrix; ValueError (the entry is then rebuilt) unless it is float32 [rows, F]
    and finite, and matches the shape its meta.json records."""
    features = np.load(folder / FILE, allow_pickle=False)
    if features.dtype != np.float32:
        raise ValueError(f"{FILE} holds {features.dtype}, expected float32")
    meta = json.loads((folder / "meta.json").read_text())
    if list(features.shape) != meta.get("shape"):
        raise ValueError(f"{FILE} has shape {list(features.shape)}, meta.json says {meta.get('shape')}")
    return checked(features, rows, FILE)
