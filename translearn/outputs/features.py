"""``translearn-features``: a run's item vectors per domain (and static user vectors), as .npy and Parquet.

For each domain of the model, ``items_<domain>.npy`` (float32 [num_items, D], row i = item index i) and
``items_<domain>.parquet`` (columns ``item_id`` raw id, ``index``, ``vector`` fixed-size list of D floats).
Id models also get ``users.npy`` / ``users.parquet`` (``user_id``, ``index``, ``vector``); sequence models
have no static user vectors (their query is a history), which ``features.json`` says instead of faking
them. ``features.json`` records the run, checkpoint, model family, head, and per-domain counts and dims.
Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from translearn.cache import atomic_write_bytes, atomic_write_file, atomic_write_json
from translearn.outputs.progress import bar, chunks
from translearn.outputs.run import LoadedRun, OutputError

log = logging.getLogger(__name__)
MANIFEST = "features.json"
NO_USER_VECTORS = ("sequence model: a user's query is their history (encoded per request), so there are no "
                   "static user vectors; use translearn-recommend for a user's latest-history query")


@torch.no_grad()
def item_table(loaded: LoadedRun, domain: str, batch_size: int = 8192, show: bool | None = None) -> np.ndarray:
    """float32 [num_items(domain), D]: ``model.item_vectors(domain, items)`` for every item, in batches, computed
    on the run's device (``loaded.device``)."""
    model, device = loaded.model, loaded.device
    n = loaded.prepared.num_items(domain)
    parts = [model.item_vectors(domain, torch.arange(s, e, device=device)).float().cpu().numpy()
             for s, e in bar(chunks(n, batch_size), len(chunks(n, batch_size)), f"items {domain}", show)]
    return np.concatenate(parts).astype(np.float32, copy=False)


@torch.no_grad()
def user_table(loaded: LoadedRun, batch_size: int = 8192, show: bool | None = None) -> np.ndarray | None:
    """float32 [num_users, D] static user vectors (``model.user_vectors(users)``), or None for models whose
    query is a history; computed on ``loaded.device``."""
    model, device = loaded.model, loaded.device
    if model.needs_history:
        return None
    n = loaded.prepared.num_users
    parts = [model.user_vectors(torch.arange(s, e, device=device)).float().cpu().numpy()
             for s, e in bar(chunks(n, batch_size), len(chunks(n, batch_size)), "users", show)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def _npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _parquet(path: Path, id_name: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table({id_name: pa.array(np.asarray(ids).astype(str)),
                      "index": pa.array(np.arange(len(ids), dtype=np.int64)),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    atomic_write_file(path, lambda f: pq.write_table(table, f))


def export_features(loaded: LoadedRun, out: str | Path, domains: list[str] | None = None,
                    show: bool | None = None) -> dict[str, Any]:
    """Write the vectors of ``domains`` (default: every domain of the model) and the users into ``out``;
    returns what ``features.json`` holds."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out: {out} is a file, not a folder")
    try:  # a read-only or locked folder fails here, before any vector is computed
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as err:
        raise OutputError(f"--out: cannot write into {out}: {err.strerror or err}") from None
    domains = [loaded.domain(d) for d in domains] if domains else list(loaded.model.domains)
    manifest: dict[str, Any] = {**loaded.describe(), "domains": {}}
    for domain in domains:
        vectors = item_table(loaded, domain, show=show)
        _npy(out / f"items_{domain}.npy", vectors)
        _parquet(out / f"items_{domain}.parquet", "item_id", loaded.prepared.data.domain(domain).item_ids, vectors)
        manifest["domains"][domain] = {"items": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
                                       "npy": f"items_{domain}.npy", "parquet": f"items_{domain}.parquet"}
        log.info("items of %s: %d x %d", domain, *vectors.shape)
    users = user_table(loaded, show=show)
    if users is None:
        manifest["users"] = None
        manifest["users_note"] = NO_USER_VECTORS
        log.info("no user vectors: %s", NO_USER_VECTORS)
    else:
        _npy(out / "users.npy", users)
        _parquet(out / "users.parquet", "user_id", loaded.prepared.data.user_ids, users)
        manifest["users"] = {"users": int(users.shape[0]), "dim": int(users.shape[1]), "npy": "users.npy",
                             "parquet": "users.parquet"}
        log.info("users: %d x %d", *users.shape)
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def read_features(folder: str | Path, domain: str | None = None) -> tuple[dict[str, Any], str, np.ndarray, np.ndarray]:
    """(manifest, domain, vectors [n, D], raw item ids [n]) of a folder written by ``export_features``;
    ``domain`` defaults to the manifest's target."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a features folder (no {MANIFEST})")
    manifest = json.loads(path.read_text())
    domain = domain or manifest.get("target")
    entry = manifest.get("domains", {}).get(domain)
    if entry is None:
        raise OutputError(f"--domain: {path} has no vectors of domain {domain!r}; it has "
                          f"{', '.join(manifest.get('domains', {})) or 'none'}")
    vectors = np.load(folder / entry["npy"], allow_pickle=False)
    ids = pq.read_table(folder / entry["parquet"], columns=["item_id"]).column("item_id").to_numpy(zero_copy_only=False)
    if len(ids) != len(vectors):
        raise ValueError(f"{folder}: {entry['npy']} has {len(vectors)} rows but {entry['parquet']} {len(ids)}")
    return manifest, domain, vectors, ids.astype(str)
