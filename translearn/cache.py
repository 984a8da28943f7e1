"""Content-hash keys, atomic writes and verified entries, shared by every cache (prepared data, text
embeddings, source-stage models). A killed run leaves at most a ``.tmp-*`` entry behind, never a
half-written cache entry: readers only ever see complete files or directories.

A cache entry is a directory written by ``write_entry``: the files its writer makes, then
``checksums.json`` (the sha256 of every other file) last. ``read_entry`` verifies those checksums
before loading, and an entry that fails (truncated, emptied, flipped bytes, or unreadable) is moved
away with a warning, so the caller rebuilds it once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np

log = logging.getLogger(__name__)
CHECKSUMS = "checksums.json"
T = TypeVar("T")


def describe(obj: Any) -> Any:
    """A JSON-able description of a config object: dataclasses by class path and fields, containers
    recursively. Used to build cache keys, so two objects with the same description are interchangeable. A field
    added later with ``metadata={"key_omits_default": True}`` is left out at its default (earlier keys hold)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        fields = {f.name: describe(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                  if not (f.metadata.get("key_omits_default") and getattr(obj, f.name) == f.default)}
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
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    except OSError as err:  # a read-only or locked cache folder, or a file in the way: the user's to fix
        from translearn.errors import ConfigError

        raise ConfigError(f"config key 'paths.cache_dir': cannot write the cache entry {final}: "
                          f"{err.strerror or err}", config_key="paths.cache_dir") from err
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


# ---- verified cache entries ---------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_files(entry: Path) -> list[str]:
    return sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_entry(final: Path, write: Callable[[Path], None]) -> Path:
    """``atomic_write_dir`` for a cache entry: ``write(tmp_dir)``, then ``checksums.json`` over its files."""
    def write_and_sum(tmp: Path) -> None:
        write(tmp)
        sums = {name: _sha256(tmp / name) for name in _entry_files(tmp)}
        (tmp / CHECKSUMS).write_text(json.dumps({"sha256": sums}, indent=1, sort_keys=True) + "\n")

    return atomic_write_dir(final, write_and_sum)


def entry_problem(entry: Path) -> str | None:
    """Why the entry at ``entry`` cannot be trusted, or None when every file matches its checksum."""
    try:
        sums = json.loads((entry / CHECKSUMS).read_text())["sha256"]
    except FileNotFoundError:
        return f"no {CHECKSUMS} (written by an older version, or not by the cache)"
    except (ValueError, KeyError, TypeError) as err:
        return f"{CHECKSUMS} is unreadable ({type(err).__name__})"
    if not isinstance(sums, dict):
        return f"{CHECKSUMS} is unreadable (no file list)"
    files = _entry_files(entry)
    if sorted(sums) != files:
        return f"its files ({', '.join(files) or 'none'}) are not the ones listed in {CHECKSUMS}"
    for name in files:
        if _sha256(entry / name) != sums[name]:
            return f"{name} does not match its checksum (truncated or corrupted)"
    return None


def read_verified(entry: Path) -> bool:
    """Whether ``entry`` exists and every file in it matches its checksum."""
    return Path(entry).is_dir() and entry_problem(Path(entry)) is None


def discard_entry(entry: Path) -> None:
    """Remove a bad entry atomically: rename it to a ``.tmp-bad-*`` name first (readers then miss it), then delete."""
    entry = Path(entry)
    away = Path(tempfile.mkdtemp(prefix=f".tmp-bad-{entry.name}-", dir=entry.parent))
    with contextlib.suppress(FileNotFoundError):  # another process discarded it first
        os.replace(entry, away / entry.name)
    shutil.rmtree(away, ignore_errors=True)


def read_entry(entry: Path, load: Callable[[Path], T], what: str) -> T | None:
    """``load(entry)`` if the entry exists and verifies; None (and the entry discarded, with a warning naming
    ``what`` and the reason) when it is missing or bad, so the caller builds it again."""
    entry = Path(entry)
    if not entry.is_dir():
        if not entry.exists() and not entry.is_symlink():
            return None
        problem = "it is a file, not a cache entry folder"  # damage like any other: moved away and rebuilt
        log.warning("%s cache entry %s is bad: %s; rebuilding it", what, entry, problem)
        discard_entry(entry)
        return None
    problem = entry_problem(entry)
    if problem is None:
        try:
            return load(entry)
        except Exception as err:  # verified bytes that still fail to load: treat as bad too
            problem = f"it failed to load ({type(err).__name__}: {err})"
    log.warning("%s cache entry %s is bad: %s; rebuilding it", what, entry, problem)
    discard_entry(entry)
    return None


LOCK_STALE_S = float(os.environ.get("TRANSLEARN_LOCK_STALE_S", 120))  # a lock file not refreshed for this long is stale
LOCK_POLL_S = 0.5


@contextlib.contextmanager
def entry_lock(entry: Path | None) -> Iterator[None]:
    """Hold an exclusive lock for ``entry`` while building-if-missing, so parallel jobs and the ranks of a
    multi-node job build one cache entry once: the others wait, then read it. ``None``: no cache, no lock.

    Two locks, both needed: a ``flock`` on a file in this machine's temp folder (the processes of one
    machine queue on it without polling; a killed job releases it with its process), then a lock file
    ``.lock-<entry>`` beside the entry, made by an atomic exclusive create, which also holds across the
    machines that share the cache folder (NFS, Lustre, GPFS), where ``flock`` alone may not. The holder
    refreshes the lock file's time every few seconds; a lock file not refreshed for ``LOCK_STALE_S`` seconds
    (``TRANSLEARN_LOCK_STALE_S``), or held by a process of this machine that no longer runs, is stale and
    taken over, so a job killed on another node blocks the others for at most that long."""
    if entry is None:
        yield
        return
    folder = Path(tempfile.gettempdir()) / "translearn-locks"
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(str(Path(entry).resolve()).encode()).hexdigest()[:32]
    with open(folder / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            with shared_lock(_cache_folder(Path(entry).parent) / f".lock-{Path(entry).name}"):
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_folder(folder: Path) -> Path:
    """``folder``, made if missing; a read-only or locked one (or a file in the way) is the user's to fix."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from translearn.errors import ConfigError

        raise ConfigError(f"config key 'paths.cache_dir': cannot make the cache folder {folder}: "
                          f"{err.strerror or err}", config_key="paths.cache_dir") from err
    return folder


def _lock_owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}


def _lock_is_stale(path: Path, stale_s: float) -> bool:
    """Whether the lock file at ``path`` was left by a job that is gone: not refreshed for ``stale_s``
    seconds, or written by a process of this machine that no longer exists."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: not stale, just free
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        owner = {}  # being written (still empty) or unreadable: only its age decides
    if age > stale_s:
        return True
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        try:
            os.kill(owner["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


@contextlib.contextmanager
def shared_lock(path: Path, stale_s: float | None = None, poll_s: float = LOCK_POLL_S) -> Iterator[None]:
    """An exclusive lock that holds on a shared file system: the lock file ``path`` made with ``O_CREAT |
    O_EXCL`` (atomic on NFSv3+ and the cluster file systems), refreshed by a thread while held, removed on
    release; a stale one (see ``_lock_is_stale``) is renamed away (one waiter wins the rename) and retaken."""
    import threading

    stale_s = LOCK_STALE_S if stale_s is None else stale_s
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = _lock_owner()
    waited, warned = 0.0, False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            if _lock_is_stale(path, stale_s):
                away = path.with_name(f"{path.name}.stale-{owner['token']}")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, away)  # only one waiter's rename finds the file
                    log.warning("cache lock %s was stale (its job is gone); taking it over", path)
                    away.unlink(missing_ok=True)
                continue
            if not warned and waited > 30:
                log.info("waiting for cache lock %s (another job is building this entry)", path)
                warned = True
            time.sleep(poll_s)
            waited += poll_s
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(owner))
        break
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(max(stale_s / 8, 0.05)):
            with contextlib.suppress(OSError):
                os.utime(path)

    keeper = threading.Thread(target=refresh, name="translearn-lock-refresh", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        with contextlib.suppress(OSError, ValueError):  # remove it only if it is still ours
            if json.loads(path.read_text()).get("token") == owner["token"]:
                path.unlink()
