"""``DataFacts``: what a strategy must know about the data, computed once and passed in when it is built.

Some strategies need facts about the training data beyond their batches: which users have source data
(feature reuse, mapping), how often each target item was bought (popularity), whether source and target
share users at all (joint training and model fixing refuse otherwise). They take them as the ``facts``
argument of their constructor, so a strategy built from Python cannot silently run without them (it
raises a ``TypeError`` naming the argument). ``build_strategy`` passes ``DataFacts.of(prepared)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from translearn.data.prepared import PreparedData
from translearn.data.schema import Interactions


@dataclass(frozen=True)
class DataFacts:
    """Facts of one prepared data set (training rows only; held-out rows never enter a fact).

    target, sources:    the domains
    trained_users:      {domain: bool [num_users]} whether the user has training rows in the domain
    shared_users:       {source: int} users with training rows in the source and any row in the target
    target_item_counts: int64 [num_target_items] training interactions per target item
    has_ratings:        {domain: bool} whether the domain's training rows carry explicit ratings
    train_rows:         ``domain -> Interactions``, the domain's training rows (``PreparedData.train``), for
                        a strategy that reads users' source histories (ptupcdr); None when not given
    """

    target: str
    sources: tuple[str, ...]
    trained_users: dict[str, np.ndarray]
    shared_users: dict[str, int]
    target_item_counts: np.ndarray
    has_ratings: dict[str, bool]
    train_rows: Callable[[str], Interactions] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, prepared: PreparedData) -> DataFacts:
        trained = {d: prepared.users_with_training_data([d]) for d in prepared.domains}
        target_rows = prepared.train(prepared.target)
        return cls(
            target=prepared.target,
            sources=tuple(prepared.sources),
            trained_users=trained,
            shared_users={s: len(prepared.overlap(s)) for s in prepared.sources},
            target_item_counts=np.bincount(target_rows.items, minlength=prepared.num_items(prepared.target)),
            has_ratings={d: prepared.train(d).ratings is not None for d in prepared.domains},
            train_rows=prepared.train,
        )

    def users_with_training_data(self, domains: list[str]) -> np.ndarray:
        """bool [num_users]: whether a user has training rows in any of ``domains``."""
        for d in domains:
            if d not in self.trained_users:
                raise KeyError(f"no facts for domain {d!r}; the data has {', '.join(self.trained_users)}")
        return np.logical_or.reduce([self.trained_users[d] for d in domains]) if domains else \
            np.zeros_like(next(iter(self.trained_users.values())))


    def training_rows(self, domain: str) -> Interactions:
        """The training rows of ``domain`` (never a held-out row); a ValueError when the facts were built
        without them."""
        if domain not in self.trained_users:
            raise KeyError(f"no facts for domain {domain!r}; the data has {', '.join(self.trained_users)}")
        if self.train_rows is None:
            raise ValueError("these facts carry no training rows; build them with DataFacts.of(prepared)")
        return self.train_rows(domain)


def require_facts(facts: DataFacts | None, strategy: str, why: str) -> DataFacts:
    """``facts`` if given, else a TypeError that names the argument and what it is for."""
    if facts is None:
        raise TypeError(f"{strategy} needs facts=DataFacts.of(prepared) ({why}); build_strategy passes it, "
                        "from Python pass it yourself: from translearn.data.facts import DataFacts")
    return facts
