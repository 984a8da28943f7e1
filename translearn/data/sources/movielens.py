"""MovieLens in RecBole's atomic-file format (``<name>.inter`` + ``<name>.item``): one domain, ``domain``.

Tab separated files whose header cells are ``name:type``; columns are found by name, in any order.
``<name>.inter``: user_id, item_id (required), rating, timestamp (optional; order = timestamp).
``<name>.item`` (optional file): item_id, movie_title (item text), release_year and class (attributes:
the class words followed by the year).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData
from translearn.data.sources.base import fingerprint_files, require_files
from translearn.data.sources.tabular import read_text_table, to_float


def _read_atomic(path: Path, required: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table and a map from column name (the header part before ':') to its header cell."""
    df = read_text_table(path, "\t", quoting=csv.QUOTE_NONE)
    columns = {str(c).split(":", 1)[0].strip(): str(c) for c in df.columns}
    for name in required:
        if name not in columns:
            have = ", ".join(map(str, df.columns))
            raise DataError(f"required column {name!r} not found; the header has: {have}", path=path,
                            column=name)
    return df, columns


class MovieLens:
    """Reader for a RecBole-format MovieLens folder (e.g. ``ml-100k``)."""

    def __init__(self, root: str | Path, name: str = "ml-100k", domain: str = "movies") -> None:
        self.root, self.name, self.domain = Path(root), name, domain

    def _paths(self) -> list[Path]:
        inter = require_files(self.root, [f"{self.name}.inter"], "MovieLens")
        item = self.root / f"{self.name}.item"
        return inter + ([item] if item.is_file() else [])

    def fingerprint(self) -> str:
        return fingerprint_files("movielens", self._paths(), name=self.name, domain=self.domain)

    def load(self) -> CrossDomainData:
        paths = self._paths()
        df, cols = _read_atomic(paths[0], ["user_id", "item_id"])
        raw = RawDomain(
            users=df[cols["user_id"]].to_numpy(),
            items=df[cols["item_id"]].to_numpy(),
            ratings=to_float(df[cols["rating"]], paths[0], "rating") if "rating" in cols else None,
            order=to_float(df[cols["timestamp"]], paths[0], "timestamp") if "timestamp" in cols else None,
        )
        if len(paths) > 1:
            items, icols = _read_atomic(paths[1], ["item_id"])
            raw.catalog = items[icols["item_id"]].to_numpy()
            if "movie_title" in icols:
                raw.item_text = items[icols["movie_title"]].to_numpy(dtype=object)
            parts = [items[icols[c]] for c in ("class", "release_year") if c in icols]
            if parts:
                attrs = parts[0] if len(parts) == 1 else parts[0].str.cat(parts[1], sep=" ")
                raw.item_attributes = attrs.str.strip().to_numpy(dtype=object)
        return build_cross_domain({self.domain: raw})
