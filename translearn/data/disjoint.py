"""``DisjointUsers``: a split where the source and target domains share no training users.

Transfer across platforms has no shared users; a data set with overlapping users (Amazon Arts/Office)
can imitate it. Users with rows in the target and in a source domain are divided at random (seeded by
the data seed) into

- **source-side users** (a ``source_share`` of them): keep their source rows, lose their target rows;
- **target-side users** (the rest): keep their target rows, lose their source rows.

Users with rows in one domain only keep them. The target's remaining rows then get leave-one-out roles
(``LeaveOneOut``: last by order key = test, second last = valid, ties by ``ties``). Every kept source row
is TRAIN. Lost rows are ``DROPPED``: ``prepare`` deletes them and reports how many each domain lost and
why. Afterwards no user has training rows in both the target and a source domain (checked here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from translearn.data.schema import MISSING, CrossDomainData
from translearn.data.splits import DROPPED, TRAIN, LeaveOneOut, SplitError, SplitRoles, check_ties

NONE, SOURCE_SIDE, TARGET_SIDE = 0, 1, 2


@dataclass(frozen=True)
class DisjointUsers:
    """Divide the shared users into source-side and target-side users (see the module docstring).

    source_share: fraction of the shared users that go to the source side, in (0, 1); halves round up
    ties:         the tie rule of the target's leave-one-out roles and of histories (``splits.row_order``)
    """

    source_share: float = 0.5
    ties: str = "file_order"

    def __post_init__(self) -> None:
        check_ties(self.ties)
        if not 0.0 < self.source_share < 1.0:
            raise SplitError(f"data.split.source_share must be in (0, 1), got {self.source_share}")

    def sides(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> np.ndarray:
        """int8 [num_users]: SOURCE_SIDE or TARGET_SIDE for users with rows in the target and a source,
        NONE for the rest (they keep whatever rows they have)."""
        in_source = np.unique(np.concatenate([data.users_in(s) for s in sources]))
        shared = np.intersect1d(data.users_in(target), in_source, assume_unique=True)
        chosen = np.random.default_rng(seed).permutation(shared)
        n_source = int(np.floor(self.source_share * len(shared) + 0.5))
        side = np.full(data.num_users, NONE, dtype=np.int8)
        side[chosen[:n_source]] = SOURCE_SIDE
        side[chosen[n_source:]] = TARGET_SIDE
        return side

    def __call__(self, data: CrossDomainData, target: str, sources: Sequence[str], seed: int) -> SplitRoles:
        if not sources:
            raise SplitError("data.split=disjoint_users divides users between source and target domains, but "
                             "data.source_domains is empty")
        side = self.sides(data, target, sources, seed)
        roles, lost = {}, {}
        for name in sources:
            users = data.domain(name).interactions.users
            roles[name] = np.where(_side_of(side, users) == TARGET_SIDE, DROPPED, TRAIN).astype(np.int8)
            lost[name] = "source rows of users assigned to the target side"
        dom = data.domain(target)
        keep = _side_of(side, dom.interactions.users) != SOURCE_SIDE
        kept = data.replace_domains({target: dom.with_interactions(dom.interactions.take(keep))})
        roles[target] = np.full(len(keep), DROPPED, dtype=np.int8)
        roles[target][keep] = LeaveOneOut(self.ties)(kept, target, sources, seed)
        lost[target] = "target rows of users assigned to the source side"
        _check_disjoint(data, target, roles)
        n_src, n_tgt = int((side == SOURCE_SIDE).sum()), int((side == TARGET_SIDE).sum())
        note = (f"disjoint users: {n_src + n_tgt:,} users with rows in {target} and a source -> {n_src:,} source "
                f"side (source_share {self.source_share}), {n_tgt:,} target side; no user trains in both")
        return SplitRoles(roles, lost, (note,))


def _side_of(side: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Side per row (NONE for a missing user id)."""
    return np.where(users == MISSING, NONE, side[np.where(users == MISSING, 0, users)])


def _check_disjoint(data: CrossDomainData, target: str, roles: dict[str, np.ndarray]) -> None:
    """Raise if a user keeps training rows in the target and in a source (a bug, not a user error)."""
    def trained(name: str) -> np.ndarray:
        users = data.domain(name).interactions.users[roles[name] == TRAIN]
        return np.unique(users[users != MISSING])

    target_users = trained(target)
    for name in roles:
        if name != target and len(np.intersect1d(trained(name), target_users)):
            raise RuntimeError(f"disjoint_users left users with training rows in {name!r} and {target!r}")
