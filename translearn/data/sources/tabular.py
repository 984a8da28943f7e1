"""User-supplied CSV / TSV / Parquet interaction tables; also the table helpers the other readers share.

Layout (a), one table with a domain column: ``TabularSource(files={"all": "x.csv"}, domain_column="domain")``
gives one domain per value of that column (sorted, or in the order of the ``domains`` filter).
Layout (b), one table per domain: ``TabularSource(files={"books": "b.csv", "movies": "m.parquet"})`` gives
the domains named by the keys of ``files``. Optional item side tables (``item_files``, keyed by domain)
supply item text, attributes and image paths (``image_column``; relative paths are under ``image_dir`` if
set, else the item table's folder). Without an image column, ``image_dir`` (one folder, or one per domain)
holds files named by raw item id, ``<item_id>.jpg`` (or .jpeg, .png, .webp, .bmp). Empty id cells are passed
through as missing ids.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData
from translearn.data.sources import images
from translearn.data.sources.base import fingerprint_files, require_file

_COMPRESSION = {".gz", ".bz2", ".zip", ".xz", ".zst"}
_SEPS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def read_text_table(path: str | Path, sep: str, names: list[str] | None = None,
                    quoting: int = csv.QUOTE_MINIMAL) -> pd.DataFrame:
    """Every cell as str ('' when empty); the index (named "line") is each row's 1-based line in the file.

    Without ``names`` the first line is the header. Blank lines are skipped. A row with too many fields,
    a missing or undecodable file is a DataError naming the file (and the line).
    """
    try:
        df = pd.read_csv(path, sep=sep, header=None if names else 0, names=names, dtype=str, index_col=False,
                         na_filter=False, skip_blank_lines=False, quoting=quoting, on_bad_lines="error")
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as e:  # permission denied, an I/O error of the device, ...
        raise DataError(f"cannot read the file: {e.strerror or e}", path=path) from None
    except pd.errors.EmptyDataError:
        if names:
            return pd.DataFrame({n: pd.Series(dtype=str) for n in names}).rename_axis("line")
        raise DataError("file is empty (no header line)", path=path) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e})", path=path) from None
    except pd.errors.ParserError as e:
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m is None:
            raise DataError(f"malformed table: {e}", path=path) from None
        raise DataError(f"expected {m[1]} fields, saw {m[3]}", path=path, line=int(m[2])) from None
    df.index = pd.RangeIndex(1 if names else 2, len(df) + (1 if names else 2), name="line")
    blank = (df == "").all(axis=1).to_numpy()
    return df[~blank] if blank.any() else df


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def looks_like_data(names: list[object]) -> bool:
    """Whether header names look like a data row (every name a number, e.g. ``1, 1630, 4``)."""
    return bool(names) and all(_NUMBER.fullmatch(str(n).strip()) for n in names)


def require_columns(df: pd.DataFrame, columns: list[str], path: str | Path, hint: str = "") -> None:
    """DataError naming the first of ``columns`` that ``df`` lacks, and the columns it has (then ``hint``)."""
    for col in columns:
        if col not in df.columns:
            have = ", ".join(map(str, df.columns))
            raise DataError(f"column {col!r} not found; the file has columns: {have}{hint}", path=path, column=col)


def raise_first_bad(values: pd.Series, bad: np.ndarray, path: str | Path, column: str, what: str) -> None:
    """DataError for the first row where ``bad``: its line (text tables) or row (Parquet) and value."""
    label, shown = values.index[bad][0], values[bad].iloc[0]
    msg = f"value {shown!r} is not {what}"
    if values.index.name == "line":
        raise DataError(msg, path=path, line=int(label), column=column)
    raise DataError(f"row {label}: {msg}", path=path, column=column)


def to_float(values: pd.Series, path: str | Path, column: str) -> np.ndarray:
    """The column as float64; the first non-numeric, empty or non-finite cell (``1e400`` reads as inf) is a
    DataError."""
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num)
    if bad.any():
        raise_first_bad(values, bad, path, column, "a finite number")
    return num


def to_int(values: pd.Series, path: str | Path, column: str) -> np.ndarray:
    """The column as int64; the first cell that is not an integer is a DataError."""
    num = pd.to_numeric(values, errors="coerce")
    if pd.api.types.is_integer_dtype(num):
        return num.to_numpy(dtype=np.int64)
    num = num.to_numpy(dtype=np.float64)
    bad = np.isnan(num) | (num != np.round(num))
    if bad.any():
        raise_first_bad(values, bad, path, column, "an integer")
    return num.astype(np.int64)


def to_seconds(values: pd.Series, path: str | Path, column: str) -> np.ndarray:
    """Numbers stay numbers; datetimes and ISO date-time strings become seconds since the epoch (UTC)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        num = pd.to_numeric(values, errors="coerce")
        if not num.isna().any():
            return num.to_numpy(dtype=np.float64)
        values_dt = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    else:
        values_dt = values.dt.tz_localize("UTC") if values.dt.tz is None else values
    bad = values_dt.isna().to_numpy()
    if bad.any():
        raise_first_bad(values, bad, path, column, "a number or an ISO 8601 date-time")
    return (values_dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)


def _text(values: pd.Series) -> np.ndarray:
    return values.fillna("").astype(str).to_numpy(dtype=object)


class TabularSource:
    """Interactions from CSV/TSV/Parquet tables, with the columns named by the arguments."""

    def __init__(self, files: Mapping[str, str | Path], domain_column: str | None = None,
                 user_column: str = "user_id", item_column: str = "item_id", rating_column: str | None = None,
                 order_column: str | None = None, item_files: Mapping[str, str | Path] | None = None,
                 item_id_column: str = "item_id", text_column: str | None = None,
                 attributes_column: str | None = None, sep: str | None = None,
                 domains: list[str] | None = None, header: bool = True, names: list[str] | None = None,
                 image_column: str | None = None, image_dir: str | Path | Mapping[str, str] | None = None) -> None:
        if not files:
            raise ValueError("TabularSource needs at least one file")
        if not header and not names:
            raise ValueError("data.dataset.header is false, so data.dataset.names must list the column names "
                             "of the interaction files, e.g. [user_id, item_id, rating, timestamp]")
        if header and names:
            raise ValueError("data.dataset.names is only read when data.dataset.header is false (the files' "
                             "header line names the columns otherwise)")
        self.header, self.names = bool(header), None if names is None else [str(n) for n in names]
        self.files = {str(k): Path(v) for k, v in files.items()}
        self.item_files = {str(k): Path(v) for k, v in (item_files or {}).items()}
        self.domain_column, self.user_column, self.item_column = domain_column, user_column, item_column
        self.rating_column, self.order_column = rating_column, order_column
        self.item_id_column, self.text_column = item_id_column, text_column
        self.attributes_column = attributes_column
        if image_column is not None and not item_files:
            raise ValueError("data.dataset.image_column names a column of the item tables: set "
                             "data.dataset.item_files too (or use data.dataset.image_dir alone)")
        self.image_column = image_column
        self.image_dir = None if image_dir is None else (
            {str(k): str(v) for k, v in image_dir.items()} if isinstance(image_dir, Mapping) else str(image_dir))
        sep = "\t" if sep in ("tab", "\\t") else sep  # a tab is hard to type on a command line
        self.sep, self.domains = sep, None if domains is None else list(domains)

    def fingerprint(self) -> str:
        opts = {k: v for k, v in vars(self).items() if k not in ("files", "item_files")}
        paths = list(self.files.values()) + list(self.item_files.values())
        for path in paths:
            require_file(path)
        return fingerprint_files(
            "tabular", paths,
            files={k: p.name for k, p in self.files.items()},
            item_files={k: p.name for k, p in self.item_files.items()}, **opts, **self._image_fingerprint())

    def _image_fingerprint(self) -> dict[str, object]:
        """What the image paths depend on besides the tables' bytes: the folders relative paths resolve
        against and, for ``image_dir`` alone, which image files it holds."""
        if self.image_dir is None and self.image_column is None:
            return {}
        if self.image_column is not None:
            return {"image_bases": {n: str(self._image_base(n, p)) for n, p in self.item_files.items()}}
        dirs = self.image_dir if isinstance(self.image_dir, Mapping) else {"*": self.image_dir}
        return {"image_listing": {n: images.listing_digest(images.image_dir_of(d, n)) for n, d in dirs.items()}}

    def _image_base(self, domain: str, item_file: Path) -> Path:
        folder = images.image_dir_of(self.image_dir, domain)
        return folder if folder is not None else item_file.parent.absolute()

    def _read(self, path: Path, columns: list[str], interactions: bool = True) -> pd.DataFrame:
        """One table; ``header``/``names`` apply to the interaction files (item tables have a header)."""
        require_file(path)
        suffixes = [s.lower() for s in path.suffixes]
        ext = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] in _COMPRESSION else path.suffix.lower()
        if ext == ".parquet":
            try:
                df = pd.read_parquet(path)
            except Exception as e:  # pyarrow raises several unrelated types
                raise DataError(f"cannot read Parquet ({e})", path=path) from None
            df.index = pd.RangeIndex(1, len(df) + 1, name="row")
        else:
            sep = self.sep or _SEPS.get(ext)
            if sep is None:
                raise DataError(f"cannot tell the separator from the extension {ext!r}; set it with "
                                "+data.dataset.sep=... (e.g. +data.dataset.sep=tab, or '+data.dataset.sep=\"::\"' "
                                "for MovieLens .dat files)", path=path)
            names = self.names if interactions and not self.header else None
            df = read_text_table(path, sep, names=names)
        hint = ""
        if interactions and self.header and looks_like_data(list(df.columns)):
            hint = (" (a data row, not a header: for a file without a header line set data.dataset.header=false "
                    "and data.dataset.names=[...])")
        require_columns(df, columns, path, hint)
        return df

    def load(self) -> CrossDomainData:
        if self.domain_column is None and list(self.files) == ["all"]:
            raise DataError("one file keyed 'all' is the one-table layout: pass domain_column= to name the "
                            "column that holds each row's domain", path=self.files["all"])
        cols = [c for c in (self.user_column, self.item_column, self.rating_column, self.order_column,
                            self.domain_column) if c is not None]
        parts: dict[str, list[tuple[Path, pd.DataFrame]]] = {}
        for key, path in self.files.items():
            df = self._read(path, cols)
            if self.domain_column is None:
                parts.setdefault(key, []).append((path, df))
                continue
            dom = df[self.domain_column]
            empty = (dom.isna() | (dom.astype(str).str.strip() == "")).to_numpy()
            if empty.any():
                raise_first_bad(dom, empty, path, self.domain_column, "a domain name")
            dom = dom.astype(str).str.strip()
            for name, group in df.groupby(dom.to_numpy(), sort=True):
                parts.setdefault(str(name), []).append((path, group))
        names = list(parts)
        if self.domains is not None:
            unknown = [d for d in self.domains if d not in parts]
            if unknown:
                raise DataError(f"unknown domain(s) {', '.join(unknown)}; the data has: {', '.join(names)}",
                                path=next(iter(self.files.values())), column=self.domain_column)
            names = self.domains
        raw = {name: self._domain(parts[name]) for name in names}
        for name, path in self.item_files.items():
            if name in raw:
                self._add_items(raw[name], path, name)
            elif name not in parts:
                raise DataError(f"item file for unknown domain {name!r}; the data has: {', '.join(parts)}",
                                path=path)
        data = build_cross_domain(raw)
        if self.image_dir is None or self.image_column is not None:
            return data
        domains = {}
        for name, dom in data.domains.items():
            folder = images.image_dir_of(self.image_dir, name)
            paths = None if folder is None else images.paths_from_folder(dom.item_ids, folder, name)
            domains[name] = replace(dom, image_paths=paths)
        return data.replace_domains(domains)

    def _domain(self, parts: list[tuple[Path, pd.DataFrame]]) -> RawDomain:
        def ids(col: str) -> np.ndarray:
            arrays = [df[col].to_numpy() for _, df in parts]
            return arrays[0] if len(arrays) == 1 else np.concatenate([a.astype(object) for a in arrays])

        rc, oc = self.rating_column, self.order_column
        return RawDomain(
            users=ids(self.user_column),
            items=ids(self.item_column),
            ratings=None if rc is None else np.concatenate([to_float(df[rc], p, rc) for p, df in parts]),
            order=None if oc is None else np.concatenate([to_seconds(df[oc], p, oc) for p, df in parts]),
        )

    def _add_items(self, raw: RawDomain, path: Path, domain: str) -> None:
        tc, ac, ic = self.text_column, self.attributes_column, self.image_column
        df = self._read(path, [c for c in (self.item_id_column, tc, ac, ic) if c is not None], interactions=False)
        raw.catalog = df[self.item_id_column].to_numpy()
        raw.item_text = None if tc is None else _text(df[tc])
        raw.item_attributes = None if ac is None else _text(df[ac])
        if ic is not None:
            raw.image_paths = images.paths_from_column(_text(df[ic]), self._image_base(domain, path), path, ic)
