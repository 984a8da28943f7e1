"""Splits: a role (train / valid / test) for every interaction of every domain.

A split is called as ``split(data, target, sources, seed)`` and returns either

- an int8 array, one role per target interaction (``TRAIN``, ``VALID``, ``TEST`` or ``DROPPED``); every
  source row is then TRAIN. The target-only splits (leave-one-out, ratio, temporal, cold start) do this;
- or a ``SplitRoles``: an int8 role array per domain (sources included), why each domain's ``DROPPED``
  rows are dropped, and notes for the data report (``disjoint.DisjointUsers`` does this).

``split_roles`` turns either form into a ``SplitRoles``; ``prepare`` then removes the DROPPED rows
(reporting how many each domain lost and why), so a prepared data set only holds TRAIN / VALID / TEST.
Randomness comes from the ``seed`` argument only, so a split is reproducible and can be cached.

Order and ties: splits that look at time order rows by the domain's order key; rows whose keys tie are
ordered by the split's ``ties`` rule, ``file_order`` (default: the row order of the data as loaded, the
later row counts as later, as RecBole's stable sort by time does) or ``item`` (the higher item index counts
as later). ``row_order`` is the one definition of that order; a split and anything that cuts histories
"before the target" must use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from translearn.data.schema import CrossDomainData, Interactions
from translearn.errors import UserError

TRAIN, VALID, TEST = 0, 1, 2
DROPPED = -1  # a row the split removes from its domain (``prepare`` deletes it and reports the count)
ROLE_NAMES = {TRAIN: "train", VALID: "valid", TEST: "test"}


TIES = ("file_order", "item")


class SplitError(UserError, ValueError):
    """A split that cannot be made on this data (for example it would leave users without training data)."""


def check_ties(ties: str) -> None:
    """Raise a one-line SplitError unless ``ties`` is a known tie rule."""
    if ties not in TIES:
        raise SplitError(f"data.split.ties must be one of {', '.join(TIES)}, got {ties!r}")


@dataclass(frozen=True)
class SplitRoles:
    """A split's result over every domain.

    roles:   {domain: int8 [N_domain]} TRAIN / VALID / TEST / DROPPED per interaction of the domain
    dropped: {domain: reason} why the domain's DROPPED rows are dropped (for the report)
    notes:   lines for the data report (e.g. how users were divided)
    """

    roles: Mapping[str, np.ndarray]
    dropped: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def split_roles(result: np.ndarray | SplitRoles, data: CrossDomainData, target: str,
                drop_reason: str = "rows the split removed") -> SplitRoles:
    """``result`` of a split as a checked ``SplitRoles`` with a role array for every domain of ``data``: an
    array is the target's roles (sources all TRAIN; its DROPPED rows are dropped for ``drop_reason``)."""
    if not isinstance(result, SplitRoles):
        result = SplitRoles({target: np.asarray(result)}, {target: drop_reason})
    roles = {}
    for name, dom in data.domains.items():
        n = len(dom.interactions)
        r = np.asarray(result.roles[name], dtype=np.int8) if name in result.roles else np.full(n, TRAIN, np.int8)
        if r.shape != (n,):
            raise SplitError(f"the split gave {r.shape} roles for domain {name!r}, which has {n:,} interactions")
        if not np.isin(r, (DROPPED, TRAIN, VALID, TEST)).all():
            raise SplitError(f"the split gave domain {name!r} roles other than dropped/train/valid/test")
        if (r == DROPPED).any() and name not in result.dropped:
            raise SplitError(f"the split drops rows of domain {name!r} without saying why")
        roles[name] = r
    unknown = set(result.roles) - set(data.domains)
    if unknown:
        raise SplitError(f"the split gave roles for unknown domains {sorted(unknown)}")
    return SplitRoles(roles, dict(result.dropped), tuple(result.notes))


def row_order(inter: Interactions, ties: str = "file_order", seed: int = 0, by_user: bool = True) -> np.ndarray:
    """Row indices from earliest to latest: by (user, order key, tie rule), or by (order key, tie rule)
    over all users when ``by_user`` is False. Returns an int64 permutation of ``range(len(inter))``.

    ``ties="file_order"`` keeps tied rows in their row order (a stable sort); ``ties="item"`` puts the
    higher item index later. Without an order key the order is a permutation drawn with ``seed``.
    """
    check_ties(ties)
    n = len(inter)
    if inter.order is not None:
        primary = inter.order
        tie = inter.items if ties == "item" else np.arange(n)
    else:
        primary = np.random.default_rng(seed).permutation(n)
        tie = np.zeros(n, dtype=np.int64)
    keys = (tie, primary, inter.users) if by_user else (tie, primary)
    return np.lexsort(keys).astype(np.int64)  # lexsort is stable: equal keys keep row order


def user_positions(inter: Interactions, seed: int, ties: str = "file_order") -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Rows grouped by user and ordered within each user (``row_order``).

    Returns (perm, pos, size): ``perm`` lists row indices in ``row_order``, ``pos[r]`` is row perm[r]'s
    0-based position within its user and ``size[r]`` that user's row count.
    """
    n = len(inter)
    perm = row_order(inter, ties, seed)
    users = inter.users[perm]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, sizes)
    return perm, pos, np.repeat(sizes, sizes)


@dataclass(frozen=True)
class LeaveOneOut:
    """Per user, the last interaction by order key is test and the second last valid.

    Users with 2 interactions get train + test; users with 1 keep it in training (as RecBole does).
    Ties in the order key follow ``ties`` (see ``row_order``); data without an order key is ordered at random.
    """

    ties: str = "file_order"

    def __post_init__(self) -> None:
        check_ties(self.ties)

    def __call__(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> np.ndarray:
        inter = data.domain(target).interactions
        perm, pos, size = user_positions(inter, seed, self.ties)
        roles = np.full(len(inter), TRAIN, dtype=np.int8)
        from_end = size - pos  # 1 = last
        role_sorted = np.where((from_end == 1) & (size >= 2), TEST,
                               np.where((from_end == 2) & (size >= 3), VALID, TRAIN))
        roles[perm] = role_sorted
        return roles


@dataclass(frozen=True)
class RatioSplit:
    """Per user, split interactions by ``ratios`` (train, valid, test), at random or by time.

    Each user keeps at least one training interaction; counts are rounded down for valid and test.
    By time, ties in the order key follow ``ties`` (see ``row_order``).
    """

    ratios: Sequence[float] = (0.8, 0.1, 0.1)
    temporal: bool = False
    ties: str = "file_order"

    def __post_init__(self) -> None:
        check_ties(self.ties)

    def __call__(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> np.ndarray:
        r = np.asarray(self.ratios, dtype=float)
        if r.shape != (3,) or (r < 0).any() or not np.isclose(r.sum(), 1.0) or r[0] <= 0:
            raise SplitError(f"data.split.ratios must be three non-negative numbers (train, valid, test) that "
                             f"sum to 1 with train > 0, got {list(self.ratios)}")
        inter = data.domain(target).interactions
        if self.temporal and inter.order is None:
            raise SplitError(f"temporal ratio split needs an order key, but domain {target!r} has none")
        shuffled = inter if self.temporal else Interactions(inter.users, inter.items, None, None)
        perm, pos, size = user_positions(shuffled, seed, self.ties)
        n_test = np.floor(size * r[2] + 1e-9).astype(int)  # + 1e-9: 90 * 0.7 is 62.999... in floating point
        n_valid = np.floor(size * r[1] + 1e-9).astype(int)
        n_eval = np.minimum(n_test + n_valid, size - 1)
        n_valid = np.minimum(n_valid, n_eval)
        n_test = n_eval - n_valid
        from_end = size - pos  # 1 = last
        role_sorted = np.where(from_end <= n_test, TEST, np.where(from_end <= n_test + n_valid, VALID, TRAIN))
        roles = np.empty(len(inter), dtype=np.int8)
        roles[perm] = role_sorted
        return roles


@dataclass(frozen=True)
class TemporalSplit:
    """One global time cut for everybody: the latest ``test_fraction`` of target interactions are test,
    the ``valid_fraction`` before them valid. Users whose target interactions all fall after the train
    cut have no training data there: ``users_without_train`` says whether that is an ``error`` (default),
    whether to ``drop`` their valid/test rows, or to ``keep`` them as cold-start users. Rows with tied
    order keys are ordered by ``ties`` (see ``row_order``)."""

    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    users_without_train: str = "error"
    ties: str = "file_order"
    drop_reason = "held-out rows of users without training data"  # users_without_train=drop (a class constant)

    def __post_init__(self) -> None:
        check_ties(self.ties)

    def __call__(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> np.ndarray:
        inter = data.domain(target).interactions
        if inter.order is None:
            raise SplitError(f"temporal split needs an order key (timestamp), but domain {target!r} has none")
        if self.users_without_train not in ("error", "drop", "keep"):
            raise SplitError("data.split.users_without_train must be error, drop or keep, "
                             f"got {self.users_without_train!r}")
        n = len(inter)
        rank = np.argsort(row_order(inter, self.ties, seed, by_user=False), kind="stable")
        # counts in whole rows (1 - 0.1 - 0.2 is 0.7000000000000001 in floating point, so no fraction cuts)
        n_test = int(np.floor(n * self.test_fraction + 1e-9))
        n_held = int(np.floor(n * (self.test_fraction + self.valid_fraction) + 1e-9))
        roles = np.where(rank >= n - n_test, TEST, np.where(rank >= n - n_held, VALID, TRAIN))
        roles = roles.astype(np.int8)
        has_train = np.zeros(data.num_users, dtype=bool)
        has_train[inter.users[roles == TRAIN]] = True
        orphan = ~has_train[inter.users]
        if orphan.any():
            users = np.unique(inter.users[orphan])
            if self.users_without_train == "error":
                example = data.user_ids[users[0]].item()
                raise SplitError(
                    f"temporal split leaves {len(users):,} users of domain {target!r} without training data "
                    f"(e.g. user {example!r}); set data.split.users_without_train=drop or keep, or use "
                    "data.split=cold_start to evaluate such users on purpose")
            if self.users_without_train == "drop":
                roles[orphan] = DROPPED  # removed by prepare(), which reports the count
        return roles


@dataclass(frozen=True)
class ColdStartUsers:
    """Hold out a fraction of the users shared by the target and a source domain: all their target
    interactions become valid (``valid_share`` of those users) or test targets; their source data stays
    in training. Every other target interaction is training data. The split itself ignores time order;
    ``ties`` is the rule histories are ordered by (see ``row_order``)."""

    holdout_fraction: float = 0.2
    valid_share: float = 0.5
    ties: str = "file_order"

    def __post_init__(self) -> None:
        check_ties(self.ties)

    def __call__(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> np.ndarray:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise SplitError(f"data.split.holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.valid_share < 1.0:
            raise SplitError(f"data.split.valid_share must be in [0, 1), got {self.valid_share}")
        others = list(sources) or [n for n in data.domain_names if n != target]
        shared = np.unique(np.concatenate(
            [data.overlapping_users(target, o) for o in others] or [np.zeros(0, dtype=np.int64)]))
        if len(shared) == 0:
            raise SplitError(f"cold_start split needs users shared by the target {target!r} and a source "
                             f"domain ({', '.join(others) or 'none given'}); there are none")
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(shared)[: max(1, int(np.floor(self.holdout_fraction * len(shared) + 0.5)))]
        n_valid = int(np.floor(self.valid_share * len(chosen) + 0.5))  # halves round up, not to even
        role_of_user = np.full(data.num_users, TRAIN, dtype=np.int8)
        role_of_user[chosen[:n_valid]] = VALID
        role_of_user[chosen[n_valid:]] = TEST
        return role_of_user[data.domain(target).interactions.users]
