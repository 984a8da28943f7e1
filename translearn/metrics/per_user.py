"""Per-user test metrics: what ``translearn-compare`` pairs by user.

During the test stage each ranking metric also keeps its per-row values (``_RankingMetric.rows``) and
the strategy keeps the rows' users; at the end they are gathered across DDP processes (with the user
ids, so no row is lost or counted twice) and reduced to one value per user: the mean of the user's rows
(full ranking has one row per user holding all of the user's held-out items; a sampled protocol has one
row per held-out item). The run writes them to ``per_user_test.npz`` in its folder.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from translearn.cache import atomic_write_bytes

FILENAME = "per_user_test.npz"


def gather_rows(parts: list[Tensor], all_gather: Callable[[Tensor], Tensor], world_size: int) -> Tensor:
    """Concatenate this process's ``parts`` ([B_i] each) and those of every other process ([N] in all);
    ``all_gather`` is ``LightningModule.all_gather`` (equal shapes only, so rows are padded to the longest)."""
    local = torch.cat(parts) if parts else torch.zeros(0)
    if world_size <= 1:
        return local
    sizes = all_gather(torch.tensor([len(local)], device=local.device)).view(-1).tolist()
    padded = torch.zeros(max(sizes), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    everything = all_gather(padded).view(world_size, -1)
    return torch.cat([everything[r, :n] for r, n in enumerate(sizes)]).cpu()


def per_user_means(users: np.ndarray, values: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(sorted distinct users [U], {name: mean of the user's non-NaN row values [U]}) from rows [N]."""
    distinct, inverse = np.unique(users, return_inverse=True)
    out = {}
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        ok = ~np.isnan(v)
        total = np.bincount(inverse[ok], weights=v[ok], minlength=len(distinct))
        count = np.bincount(inverse[ok], minlength=len(distinct))
        out[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return distinct, out


def save_per_user(folder: str | Path, users: np.ndarray, values: Mapping[str, np.ndarray],
                  raw_ids: np.ndarray) -> Path:
    """Write ``per_user_test.npz``: ``users`` (index [U]), ``user_ids`` (raw ids as text [U]) and one float
    array [U] per test metric name (``ndcg@10``, ...), atomically."""
    path = Path(folder) / FILENAME
    buffer = io.BytesIO()
    np.savez(buffer, users=users.astype(np.int64), user_ids=np.asarray(raw_ids[users]).astype(str),
             **{name: v for name, v in values.items()})
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_per_user(folder: str | Path) -> dict[str, np.ndarray] | None:
    """The arrays of a run folder's ``per_user_test.npz``, or None when the run has none."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
