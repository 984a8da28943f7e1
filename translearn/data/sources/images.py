"""Item image paths for the readers: files in a folder named by raw item id, or a path column.

Both give, per item, the absolute path of its image file or "" when it has none (``Domain.image_paths``).
Missing files are reported in a log line (how many, and one example); the items then get a zero image
vector from the image encoder. Image bytes are not read here: the image feature cache hashes them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from translearn.data.errors import DataError

log = logging.getLogger(__name__)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # the first one present wins for an item


def missing_images(paths: np.ndarray) -> int:
    """How many entries of ``image_paths`` name no image: no path (None, NaN, ""), or no such file."""
    def present(p: object) -> bool:
        if p is None or (isinstance(p, float) and np.isnan(p)) or not str(p).strip():
            return False
        return Path(str(p)).is_file()

    return sum(1 for p in paths if not present(p))


def image_dir_of(image_dir: str | Path | Mapping[str, str | Path] | None, domain: str) -> Path | None:
    """The image folder of ``domain``: one folder for all domains, or a mapping domain -> folder."""
    if image_dir is None:
        return None
    if isinstance(image_dir, Mapping):
        folder = image_dir.get(domain)
        return None if folder is None else Path(folder).expanduser().absolute()
    return Path(image_dir).expanduser().absolute()


def folder_listing(folder: Path) -> dict[str, Path]:
    """{file stem: path} of the image files directly in ``folder`` (extensions as in ``EXTENSIONS``, any
    case); DataError naming the folder when it does not exist."""
    if not folder.is_dir():
        raise DataError("image folder not found (data.dataset.image_dir)", path=folder)
    found: dict[str, tuple[int, Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            rank = EXTENSIONS.index(ext.lower()) if ext.lower() in EXTENSIONS else -1
            if rank < 0 or not entry.is_file():
                continue
            if stem not in found or rank < found[stem][0]:
                found[stem] = (rank, folder / entry.name)
    return {stem: path for stem, (_, path) in found.items()}


def listing_digest(folder: Path) -> str:
    """sha256 of the folder's absolute path and sorted image file names (which items have an image), so
    prepared data is rebuilt when images are added or removed."""
    if not folder.is_dir():
        raise DataError("image folder not found (data.dataset.image_dir)", path=folder)
    h = hashlib.sha256(str(folder).encode())
    for stem, path in sorted(folder_listing(folder).items()):
        h.update(f"|{stem}={path.name}".encode())
    return h.hexdigest()


def _id_text(raw_id: object) -> str:
    return str(int(raw_id)) if isinstance(raw_id, int | np.integer) else str(raw_id)


def paths_from_folder(item_ids: np.ndarray, folder: Path, domain: str) -> np.ndarray:
    """[num_items] object: ``<folder>/<item id>.<ext>`` where that file exists, else "".

    DataError when no item of the domain has a file there (the folder is most likely the wrong one)."""
    listing = folder_listing(folder)
    out = np.array([str(listing.get(_id_text(i), "")) for i in item_ids], dtype=object)
    have = int(sum(bool(p) for p in out))
    if len(out) and not have:
        example = _id_text(item_ids[0])
        raise DataError(f"no image file is named by an item id of domain {domain!r} (expected e.g. "
                        f"{example}.jpg or {example}.png; the folder has {len(listing)} image files)", path=folder)
    if have < len(out):
        missing = next(_id_text(i) for i, p in zip(item_ids, out, strict=True) if not p)
        log.warning("%s: %d of %d items of domain %r have no image file (e.g. item %s); they get a zero image "
                    "vector", folder, len(out) - have, len(out), domain, missing)
    return out


def paths_from_column(values: np.ndarray, base: Path, where: Path, column: str) -> np.ndarray:
    """[M] object: each cell as an absolute path (relative ones under ``base``), "" for an empty cell.
    Paths whose file does not exist are kept (the encoder gives them a zero row) and reported."""
    out = np.empty(len(values), dtype=object)
    gone: list[str] = []
    for k, cell in enumerate(values):
        text = "" if cell is None or (isinstance(cell, float) and np.isnan(cell)) else str(cell).strip()
        if not text:
            out[k] = ""
            continue
        path = Path(text).expanduser()
        path = path if path.is_absolute() else base / path
        out[k] = str(path)
        if not path.is_file():
            gone.append(str(path))
    if gone:
        log.warning("%s, column %r: %d of %d image paths name no file (e.g. %s); those items get a zero image "
                    "vector", where, column, len(gone), len(values), gone[0])
    return out
