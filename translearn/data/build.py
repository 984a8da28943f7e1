"""Turn raw ids into the shared index space: ``RawDomain`` records -> ``CrossDomainData``.

Every source reader ends here, so id handling is the same for all formats:
- ids that are all integers stay int64 (and sort numerically), otherwise they become strings;
- ``None``, NaN and empty strings are missing ids and map to index ``MISSING`` (-1);
- users get one index across all domains, items one index per domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from translearn.data.schema import MISSING, CrossDomainData, Domain, Interactions


@dataclass
class RawDomain:
    """One domain as read from disk, before indexing.

    users, items:   [N] raw ids (any dtype; None/NaN/"" = missing)
    ratings, order: [N] float, or None
    catalog:        [M] raw item ids that have side information (items may appear here without
                    interactions); item_text / item_attributes / image_paths are aligned with it.
    image_paths:    [M] str, each catalog item's image file ("" for none), or None
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None = None
    order: np.ndarray | None = None
    catalog: np.ndarray | None = None
    item_text: np.ndarray | None = None
    item_attributes: np.ndarray | None = None
    image_paths: np.ndarray | None = None


def _missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a raw id is missing (None, NaN or an empty/blank string)."""
    series = pd.Series(values, dtype=object if values.dtype.kind not in "iuf" else values.dtype)
    missing = series.isna().to_numpy().copy()
    if values.dtype.kind in "OUS":
        missing |= series.astype(str).str.strip().eq("").to_numpy() & ~missing
    return missing


_INT_TEXT = r"-?(0|[1-9][0-9]*)"  # an integer written exactly: no sign '+', no leading zeros, no exponent


def _id_text(values: np.ndarray) -> pd.Series:
    """Ids as stripped strings; integral floats lose their '.0' (1.0 -> '1') so they match integer ids."""
    def text(v: object) -> str:
        if isinstance(v, float | np.floating) and np.isfinite(v) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()
    return pd.Series(values, dtype=object).map(text)


def _as_int(a: np.ndarray, m: np.ndarray) -> np.ndarray | None:
    """int64 ids (0 where missing) when every present id is an integer, else None.

    Integer text is parsed exactly (not through float64, which merges ids above 2**53), and text such as
    "007" or "1e3" stays a string so that distinct raw ids never collapse into one index.
    """
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    present = a[~m]
    out = np.zeros(len(a), dtype=np.int64)
    if a.dtype.kind == "f":
        if not (np.isfinite(present) & (present == np.round(present))).all():
            return None
        out[~m] = present.astype(np.int64)
        return out
    text = _id_text(present)
    if not text.str.fullmatch(_INT_TEXT).all():
        return None
    try:
        out[~m] = text.to_numpy(dtype=str).astype(np.int64)
    except OverflowError:
        return None
    return out


def normalise_ids(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Give several raw id arrays one common dtype.

    Returns (values, missing masks). Values are int64 when every present id in every array is an
    integer, else str (stripped). Missing positions hold 0 or "" and must be read with the mask.
    """
    masks = [_missing_mask(a) for a in arrays]
    as_int: list[np.ndarray] = []
    for a, m in zip(arrays, masks, strict=True):
        values = _as_int(a, m)
        if values is None:
            break
        as_int.append(values)
    if len(as_int) == len(arrays):
        return as_int, masks
    as_str = []
    for a, m in zip(arrays, masks, strict=True):
        out = np.asarray(_id_text(a).to_numpy(), dtype=str)
        out[m] = ""
        as_str.append(out)
    return as_str, masks


def _index(values: np.ndarray, missing: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in the sorted ``vocab``; MISSING where ``missing``."""
    idx = np.searchsorted(vocab, values).astype(np.int64)
    idx[missing] = MISSING
    return idx


def build_cross_domain(raw: Mapping[str, RawDomain]) -> CrossDomainData:
    """Index raw ids: one user vocabulary over all domains, one item vocabulary per domain."""
    if not raw:
        raise ValueError("no domains to build")
    names = list(raw)
    users, user_missing = normalise_ids([np.asarray(raw[n].users) for n in names])
    user_vocab = np.unique(np.concatenate([u[~m] for u, m in zip(users, user_missing, strict=True)]))
    domains: dict[str, Domain] = {}
    for k, name in enumerate(names):
        r = raw[name]
        parts = [np.asarray(r.items)] + ([np.asarray(r.catalog)] if r.catalog is not None else [])
        item_vals, item_missing = normalise_ids(parts)
        present = [v[~m] for v, m in zip(item_vals, item_missing, strict=True)]
        item_vocab = np.unique(np.concatenate(present))
        interactions = Interactions(
            users=_index(users[k], user_missing[k], user_vocab),
            items=_index(item_vals[0], item_missing[0], item_vocab),
            ratings=None if r.ratings is None else np.asarray(r.ratings, dtype=np.float32),
            order=None if r.order is None else np.asarray(r.order, dtype=np.float64),
        )
        side: dict[str, np.ndarray | None] = {"item_text": None, "item_attributes": None, "image_paths": None}
        if r.catalog is not None:
            pos = _index(item_vals[1], item_missing[1], item_vocab)
            keep = pos != MISSING
            for key in side:
                values = getattr(r, key)
                if values is not None:
                    side[key] = np.full(len(item_vocab), "", dtype=object)
                    side[key][pos[keep]] = np.asarray(values, dtype=object)[keep]
        domains[name] = Domain(name, interactions, item_vocab, **side)
    return CrossDomainData(user_ids=user_vocab, domains=domains)
