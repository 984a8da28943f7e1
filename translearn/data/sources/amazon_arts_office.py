"""Amazon Arts <-> Office sequences in the URLLM format (Shen et al. 2024): domains "arts" and "office".

Files in ``root`` (the data set's ``raw/`` folder):
- ``item_listA_F.csv`` (Arts) and ``item_listO_AA_F.csv`` (Office), CSV with the header
  ``idBefore,item_title,idAfter,item_attribute``; ``idAfter`` is the global item id used in the
  sequences, and the catalog that lists an item gives its domain.
- ``train_F2.txt``, ``valid_F2.txt``, ``test_F2.txt``: ``user <TAB> n <TAB> item|pos|pos <TAB> ...``.
  Each user has two lines sharing positions 0..n-1; the authors' user split over the files is not kept.

Raw ids: user = ``user_idx``, item = ``idAfter``; order = the sequence position. The exact duplicate
(user, item, position) records the two-line format repeats are dropped; the same item at two positions
is kept twice. Item text = title, attributes = category words and brand.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData
from translearn.data.sources.base import fingerprint_files, require_files
from translearn.data.sources.tabular import read_text_table, require_columns, to_int

CATALOGS = {"arts": "item_listA_F.csv", "office": "item_listO_AA_F.csv"}
SEQUENCES = ["train_F2.txt", "valid_F2.txt", "test_F2.txt"]
_TOKEN = re.compile(r"\d+\|\d+\|\d+")


def _read_catalog(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idAfter, item_title, item_attribute) of a catalog csv."""
    df = read_text_table(path, ",")
    require_columns(df, ["idAfter", "item_title", "item_attribute"], path)
    ids = to_int(df["idAfter"], path, "idAfter")
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        raise DataError(f"idAfter {ids[dup][0]} is listed twice", path=path, line=int(df.index[dup][0]),
                        column="idAfter")
    return ids, df["item_title"].to_numpy(dtype=object), df["item_attribute"].to_numpy(dtype=object)


def _read_sequences(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, position, line) per ``item|pos|pos`` token of one sequence file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e})", path=path) from None
    users: list[int] = []
    counts: list[int] = []
    lines: list[int] = []
    tokens: list[str] = []
    for ln, line in enumerate(text.split("\n"), 1):
        fields = line.rstrip("\r\t ").split("\t")
        if fields == [""]:
            continue
        if len(fields) < 3:
            raise DataError(f"expected 'user<TAB>n<TAB>item|pos|pos ...', got {len(fields)} field(s)",
                            path=path, line=ln)
        try:
            users.append(int(fields[0]))
            int(fields[1])
        except ValueError:
            raise DataError(f"user {fields[0]!r} and n {fields[1]!r} must be integers", path=path,
                            line=ln) from None
        counts.append(len(fields) - 2)
        lines.append(ln)
        tokens.extend(fields[2:])
    token_lines = np.repeat(np.asarray(lines, dtype=np.int64), counts)
    try:
        table = pd.read_csv(io.StringIO("\n".join(tokens)), sep="|", header=None, names=["i", "p", "q"],
                            dtype=np.int64, skip_blank_lines=False, on_bad_lines="error", index_col=False,
                            quoting=csv.QUOTE_NONE).to_numpy()
        if len(table) != len(tokens) or (table < 0).any():
            raise ValueError("token count")
    except (ValueError, OverflowError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        if not tokens:
            return (np.zeros(0, np.int64),) * 4
        k = next((k for k, t in enumerate(tokens) if not _TOKEN.fullmatch(t)), None)
        if k is None:
            raise DataError(f"cannot read the item|pos|pos tokens ({e})", path=path) from None
        line = int(token_lines[k])
        raise DataError(f"token {tokens[k]!r} is not item|pos|pos", path=path, line=line) from None
    return np.repeat(np.asarray(users, dtype=np.int64), counts), table[:, 0], table[:, 1], token_lines


def first_occurrences(*columns: np.ndarray) -> np.ndarray:
    """Sorted row indices of the first occurrence of each distinct row of the int columns."""
    if len(columns[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    key = np.zeros(len(columns[0]), dtype=np.int64)
    span = 1
    for col in columns:
        col = col - col.min()
        width = int(col.max()) + 1
        if span * width >= 2**62:  # too wide for one int64 key: compare the rows themselves
            return np.sort(np.unique(np.stack(columns, axis=1), axis=0, return_index=True)[1])
        key = key * width + col
        span *= width
    return np.sort(np.unique(key, return_index=True)[1])


class AmazonArtsOffice:
    """Reader for the URLLM Arts<->Office folder (``raw/``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _paths(self) -> list[Path]:
        return require_files(self.root, [*CATALOGS.values(), *SEQUENCES], "AmazonArtsOffice")

    def fingerprint(self) -> str:
        return fingerprint_files("amazon_arts_office", self._paths())

    def load(self) -> CrossDomainData:
        paths = self._paths()
        catalogs = {name: _read_catalog(p) for name, p in zip(CATALOGS, paths[:2], strict=True)}
        both = np.intersect1d(catalogs["arts"][0], catalogs["office"][0])
        if len(both):
            msg = f"idAfter {both[0]} is listed in both {CATALOGS['arts']} and {CATALOGS['office']}"
            raise DataError(f"{msg} ({len(both)} ids in both)", path=paths[1], column="idAfter")
        seqs = [_read_sequences(p) for p in paths[2:]]
        users, items, pos, lines = (np.concatenate(col) for col in zip(*seqs, strict=True))
        file_of = np.repeat(np.arange(len(seqs)), [len(s[0]) for s in seqs])
        keep = first_occurrences(users, items, pos)
        users, items, pos, lines, file_of = users[keep], items[keep], pos[keep], lines[keep], file_of[keep]
        in_domain = {name: np.isin(items, cat[0]) for name, cat in catalogs.items()}
        unknown = ~(in_domain["arts"] | in_domain["office"])
        if unknown.any():
            k = int(np.flatnonzero(unknown)[0])
            raise DataError(f"item {items[k]} is not listed in {CATALOGS['arts']} or {CATALOGS['office']}",
                            path=paths[2 + file_of[k]], line=int(lines[k]))
        raw = {
            name: RawDomain(users=users[m], items=items[m], order=pos[m].astype(np.float64),
                            catalog=catalogs[name][0], item_text=catalogs[name][1],
                            item_attributes=catalogs[name][2])
            for name, m in in_domain.items()
        }
        return build_cross_domain(raw)
