"""Content-hash keys and atomic writes, shared by every cache (prepared data, text embeddings,
source-stage models). A killed run leaves at most a ``.tmp-*`` entry behind, never a half-written
cache entry: readers only ever see complete files or directories."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def describe(obj: Any) -> Any:
    """A JSON-able description of a config object: dataclasses by class path and fields, containers
    recursively. Used to build cache keys, so two objects with the same description are interchangeable."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        fields = {f.name: describe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"class": f"{cls.__module__}.{cls.__qualname__}", **fields}
    if isinstance(obj, Mapping):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [describe(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "describe"):
        return obj.describe()
    raise TypeError(f"cannot describe {type(obj).__name__} for a cache key; make it a dataclass")


def content_key(parts: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``describe(parts)``."""
    text = json.dumps(describe(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` then rename the directory to ``final`` in one step.

    If another process finished the same entry first, its result is kept and ours is discarded.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_file(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temp file in the same folder, fsync it, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write_file(path, lambda f: f.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())
