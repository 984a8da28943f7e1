"""A second, sampled protocol evaluated beside the primary one (``evaluation.sampled_negatives``).

The primary protocol (``data/protocol``) is part of the data's cache key and is the one monitored.
Papers that rank each held-out item against 999 (or 100) sampled items are still common, so a run can
also report that protocol under keys that cannot be confused with full ranking
(``val/target/sampled/ndcg@10``, ``test/target/sampled/ndcg@10``). Its negatives are drawn once from
the data seed, exactly as ``data/protocol=sampled`` draws them (so the values match a run whose primary
protocol is ``sampled`` with the same count), and saved next to the data cache entry
(``<cache_dir>/sampled_protocol/<data key>-<n>.npz``, written atomically) for reuse and inspection.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from translearn.cache import atomic_write_bytes
from translearn.data.prepare import _eval_negatives
from translearn.data.prepared import PreparedData

log = logging.getLogger(__name__)
ROLES = ("valid", "test")


def sampled_view(prepared: PreparedData, num_negatives: int, seed: int,
                 cache_dir: str | Path | None = None) -> PreparedData:
    """``prepared`` with ``eval_negatives`` set to ``num_negatives`` sampled items per held-out row
    (``{"valid": int64 [n_valid_rows, K], "test": ...}``); the arrays are shared, not copied."""
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
        raise ValueError(f"config key 'evaluation.sampled_negatives' must be null or an integer >= 1, "
                         f"got {num_negatives!r}")
    available = prepared.num_items(prepared.target)
    if num_negatives >= available:
        raise ValueError(f"config key 'evaluation.sampled_negatives': {num_negatives} negatives, but the target "
                         f"domain '{prepared.target}' has only {available} items; use full ranking instead")
    path = None if cache_dir is None else Path(cache_dir) / "sampled_protocol" / f"{prepared.key}-{num_negatives}.npz"
    negatives = _read(path, prepared) if path is not None and path.is_file() else None
    if negatives is None:
        negatives = _eval_negatives(prepared.data, prepared.target, prepared.roles, num_negatives, seed,
                                    "evaluation.sampled_negatives")
        if path is not None:
            buffer = io.BytesIO()
            np.savez(buffer, **negatives)
            atomic_write_bytes(path, buffer.getvalue())
    return replace(prepared, eval_negatives=negatives)


def _read(path: Path, prepared: PreparedData) -> dict[str, np.ndarray] | None:
    """The saved negatives, or None (with a warning) when the file does not fit the data."""
    try:
        with np.load(path) as saved:
            negatives = {role: saved[role] for role in ROLES}
    except (OSError, ValueError, KeyError) as err:
        log.warning("sampled protocol: %s is unreadable (%s); drawing the negatives again", path, err)
        return None
    if any(len(negatives[role]) != len(prepared.held_out(role)) for role in ROLES):
        log.warning("sampled protocol: %s does not match the data's held-out rows; drawing them again", path)
        return None
    return negatives
