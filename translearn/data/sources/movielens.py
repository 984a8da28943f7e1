"""MovieLens in RecBole's atomic-file format (``<name>.inter`` + ``<name>.item``): one domain, ``domain``.

Tab separated files whose header cells are ``name:type``; columns are found by name, in any order.
``<name>.inter``: user_id, item_id (required), rating, timestamp (optional; order = timestamp).
``<name>.item`` (optional file): item_id, movie_title (item text), release_year and class (attributes:
the class words followed by the year).

With ``genre_domains`` the movies become several domains by genre (a real cross-domain set with every
user shared): ``{"comedy": ["Comedy"], "other": ["*"]}`` puts each movie in the first domain one of
whose genres it has (``"*"`` matches any movie). A rated movie that no domain takes is an error.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
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

    def __init__(self, root: str | Path, name: str = "ml-100k", domain: str = "movies",
                 genre_domains: dict[str, list[str]] | None = None) -> None:
        self.root, self.name, self.domain = Path(root), name, domain
        self.genre_domains = {str(k): [str(g) for g in v] for k, v in (genre_domains or {}).items()}

    def _paths(self) -> list[Path]:
        inter = require_files(self.root, [f"{self.name}.inter"], "MovieLens")
        item = self.root / f"{self.name}.item"
        return inter + ([item] if item.is_file() else [])

    def fingerprint(self) -> str:
        return fingerprint_files("movielens", self._paths(), name=self.name, domain=self.domain,
                                 genre_domains=self.genre_domains)

    def load(self) -> CrossDomainData:
        paths = self._paths()
        df, cols = _read_atomic(paths[0], ["user_id", "item_id"])
        raw = RawDomain(
            users=df[cols["user_id"]].to_numpy(),
            items=df[cols["item_id"]].to_numpy(),
            ratings=to_float(df[cols["rating"]], paths[0], "rating") if "rating" in cols else None,
            order=to_float(df[cols["timestamp"]], paths[0], "timestamp") if "timestamp" in cols else None,
        )
        genres = None
        if len(paths) > 1:
            items, icols = _read_atomic(paths[1], ["item_id"])
            raw.catalog = items[icols["item_id"]].to_numpy()
            if "movie_title" in icols:
                raw.item_text = items[icols["movie_title"]].to_numpy(dtype=object)
            parts = [items[icols[c]] for c in ("class", "release_year") if c in icols]
            if parts:
                attrs = parts[0] if len(parts) == 1 else parts[0].str.cat(parts[1], sep=" ")
                raw.item_attributes = attrs.str.strip().to_numpy(dtype=object)
            if "class" in icols:
                genres = items[icols["class"]].fillna("").astype(str).str.split().to_numpy()
        if not self.genre_domains:
            return build_cross_domain({self.domain: raw})
        if genres is None:
            where = paths[1] if len(paths) > 1 else self.root / f"{self.name}.item"
            raise DataError("genre_domains needs the item file with a 'class' column", path=where, column="class")
        return build_cross_domain(self._by_genre(raw, genres, paths[0]))

    def _by_genre(self, raw: RawDomain, genres: np.ndarray, inter_path: Path) -> dict[str, RawDomain]:
        """Split one domain's rows and catalogue into ``genre_domains`` (first matching domain wins)."""
        owner = np.full(len(raw.catalog), -1)
        for d, wanted in enumerate(self.genre_domains.values()):
            takes = np.array(["*" in wanted or bool(set(wanted) & set(g)) for g in genres], dtype=bool)
            owner[(owner < 0) & takes] = d
        catalog = pd.Series(raw.catalog).astype(str)
        first = ~catalog.duplicated().to_numpy()
        row_owner = pd.Series(owner[first], index=catalog[first]).reindex(pd.Series(raw.items).astype(str)).to_numpy()
        orphans = np.isnan(row_owner) | (row_owner < 0)
        if orphans.any():
            examples = ", ".join(map(str, pd.unique(raw.items[orphans])[:5]))
            raise DataError(f"{int(orphans.sum())} rows rate movies that no genre domain takes (item ids {examples}, "
                            f"...); add a catch-all domain such as other: ['*'] to genre_domains",
                            path=inter_path, column="item_id")
        domains = {}
        for d, name in enumerate(self.genre_domains):
            rows, cat = row_owner == d, owner == d
            domains[name] = RawDomain(
                users=raw.users[rows], items=raw.items[rows],
                ratings=None if raw.ratings is None else raw.ratings[rows],
                order=None if raw.order is None else raw.order[rows],
                catalog=raw.catalog[cat],
                item_text=None if raw.item_text is None else raw.item_text[cat],
                item_attributes=None if raw.item_attributes is None else raw.item_attributes[cat])
        return domains
