"""What every data source provides, and the file fingerprint used for cache keys."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, runtime_checkable

from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData


@runtime_checkable
class DataSource(Protocol):
    """A reader for one format. ``load`` builds the data; ``fingerprint`` identifies its content.

    The fingerprint changes whenever the loaded data could change (file bytes or reader options),
    so processed data cached under it is never stale.
    """

    def load(self) -> CrossDomainData: ...

    def fingerprint(self) -> str: ...


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(kind: str, paths: list[Path], **options: object) -> str:
    """sha256 over the reader kind, its options and the bytes of each file (in the given order)."""
    h = hashlib.sha256(kind.encode())
    for key in sorted(options):
        h.update(f"|{key}={options[key]!r}".encode())
    for p in paths:
        try:
            h.update(f"|{p.name}:{file_sha256(p)}".encode())
        except FileNotFoundError:
            raise DataError("file not found", path=p) from None
        except IsADirectoryError:
            raise DataError("is a folder, not a file", path=p) from None
        except OSError as err:  # permission denied, an I/O error of the device, ...
            raise DataError(f"cannot read the file: {err.strerror or err}", path=p) from None
    return h.hexdigest()


def require_file(path: Path) -> None:
    """DataError unless ``path`` is a file: "file not found", or "is a folder, not a file"."""
    if not path.is_file():
        raise DataError("is a folder, not a file" if path.is_dir() else "file not found", path=path)


def require_files(root: str | Path, names: list[str], what: str) -> list[Path]:
    """Paths of ``names`` under ``root``; a DataError lists the missing ones otherwise."""
    root = Path(root)
    paths = [root / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{what} expects the files {', '.join(names)} here; missing: {', '.join(missing)}. "
            "Set paths.data_root (or TRANSLEARN_DATA_ROOT) to the folder that holds the data sets.",
            path=root,
        )
    return paths
