"""Evaluation protocols: which candidates each held-out item is ranked against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from translearn.errors import ConfigError

if TYPE_CHECKING:
    from translearn.data.prepared import PreparedData


@dataclass(frozen=True)
class FullRanking:
    """Rank each user's held-out items against every item of the target domain, with the user's
    training items (and, at test time, validation items) excluded. The default and the honest choice."""

    @property
    def num_negatives(self) -> None:
        return None


@dataclass(frozen=True)
class SampledNegatives:
    """Rank each held-out item against ``num_negatives`` items the user never interacted with, drawn
    once with the data seed and saved with the prepared data so every run sees the same candidates."""

    num_negatives: int = 100

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"data.protocol.num_negatives must be >= 1, got {self.num_negatives}")


# ---------------------------------------------------------------- protocols that cannot be met are refused

# A ranking metric over fewer users than this is not a measurement: one user's HR@10 is 0 or 1.
MIN_RANKED_USERS = 2


def check_negatives(n: int, num_items: int, users: np.ndarray, items: np.ndarray, eval_users: np.ndarray,
                    domain: str, config_key: str) -> None:
    """Refuse ``n`` sampled negatives per held-out item when some evaluated user has fewer items they never
    interacted with (the candidates negatives are drawn from): the draws would repeat items, and the metrics
    would be junk (HR@10 = HR@20). ``users``/``items``: every row of ``domain``; ``eval_users``: the users of
    the held-out rows. The one rule for every path that samples evaluation negatives."""
    known = np.unique(users.astype(np.int64) * num_items + items.astype(np.int64)) // num_items
    per_user = np.bincount(known, minlength=int(max(users.max(initial=0), eval_users.max(initial=0))) + 1)
    free = num_items - per_user[np.unique(eval_users)]
    fewest = int(free.min(initial=num_items))
    if n > fewest:
        raise ConfigError(f"config key '{config_key}': {n} sampled negatives per held-out item, but domain "
                          f"{domain!r} has {num_items} items and a held-out user has only {fewest} candidate "
                          f"items they never interacted with; use at most {fewest} negatives, or full ranking "
                          "(data/protocol=full_ranking)", config_key=config_key)


def check_ranking(prepared: PreparedData, ks: Sequence[int], sampled: PreparedData | None = None,
                  eval_domains: Sequence[str] = (), roles: Sequence[str] = ("valid", "test")) -> None:
    """Refuse an evaluation that cannot rank: a target whose validation or test rows hold fewer than
    ``MIN_RANKED_USERS`` users, or a cut-off k at or above the number of candidates of a protocol (every item
    of the domain under full ranking, the held-out item and its negatives under sampling), where every
    held-out item would be a hit at k. ``roles``: the held-out roles that will be ranked (a source stage ranks
    only ``valid``)."""
    target = prepared.target
    if not roles:
        return
    for role in roles:
        users = len(np.unique(prepared.held_out(role).users))
        if users < MIN_RANKED_USERS:
            raise ConfigError(f"the target domain {target!r} is too small to rank: its {role} rows hold "
                              f"{users} user(s), and ranking metrics need at least {MIN_RANKED_USERS}; use more "
                              "data or a milder preprocessing (k-core)", config_key="data.target_domain")
    if not ks:
        return
    k = max(int(k) for k in ks)
    protocols = [(view, view.eval_negatives, view.target) for view in (prepared, sampled) if view is not None]
    protocols += [(prepared, {}, domain) for domain in eval_domains]
    for view, negatives, domain in protocols:
        if negatives:
            candidates = int(next(iter(negatives.values())).shape[1]) + 1
            what = f"{candidates} candidates per held-out item (the item and {candidates - 1} sampled negatives)"
        else:
            candidates = view.num_items(domain)
            what = f"{candidates} items in domain {domain!r} (full ranking)"
        if k >= candidates:
            raise ConfigError(f"config key 'evaluation.ks': k={k} is at or above the {what}, so every held-out "
                              f"item would be a hit at k; use ks below {candidates}", config_key="evaluation.ks")
