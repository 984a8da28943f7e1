"""Preprocessing steps. Each takes ``CrossDomainData`` and returns new data plus a ``StepReport``
that says, per domain, how many rows went in and out and why rows were removed.

Steps run in the order given (the ``data.preprocess`` mapping in config). ``compact`` runs last
automatically and drops items and users that no longer have interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from translearn.data.schema import MISSING, CrossDomainData, Domain, Interactions


@dataclass
class StepReport:
    """What one step did. ``domains[name]`` = {"before": rows, "after": rows, "removed": {reason: rows}}."""

    step: str
    domains: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, domain: str, before: int, after: int, removed: dict[str, int]) -> None:
        self.domains[domain] = {"before": before, "after": after,
                                "removed": {k: int(v) for k, v in removed.items() if v}}

    def lines(self) -> list[str]:
        out = []
        for name, r in self.domains.items():
            why = "; ".join(f"{n:,} {reason}" for reason, n in r["removed"].items()) or "nothing removed"
            out.append(f"{self.step}: {name} {r['before']:,} -> {r['after']:,} ({why})")
        return out + [f"{self.step}: {note}" for note in self.notes]


def _selected(data: CrossDomainData, domains: Sequence[str] | None) -> list[str]:
    if domains is None:
        return data.domain_names
    for name in domains:
        data.domain(name)  # raises with the list of known domains
    return list(domains)


def _require_ids(inter: Interactions, domain: str, step: str) -> None:
    """Steps that count per user or item need every id present."""
    if (inter.users == MISSING).any() or (inter.items == MISSING).any():
        raise ValueError(f"preprocess step {step}: domain {domain!r} has rows with a missing user or item id; "
                         "put a DropInvalid step (data.preprocess.drop_invalid) before it")


def _sort_key(inter: Interactions) -> np.ndarray:
    """Row order by (order key, original row): stable 'earliest first'."""
    if inter.order is None:
        return np.arange(len(inter))
    return np.lexsort((np.arange(len(inter)), inter.order))


@dataclass(frozen=True)
class Deduplicate:
    """Keep one row per (user, item) in each domain: the earliest (``keep='first'``) or latest by order."""

    keep: str = "first"
    domains: Sequence[str] | None = None

    def __call__(self, data: CrossDomainData) -> tuple[CrossDomainData, StepReport]:
        if self.keep not in ("first", "last"):
            raise ValueError(f"Deduplicate.keep must be 'first' or 'last', got {self.keep!r}")
        report = StepReport("deduplicate")
        out = dict(data.domains)
        for name in _selected(data, self.domains):
            dom = data.domains[name]
            inter = dom.interactions
            _require_ids(inter, name, "deduplicate")
            order = _sort_key(inter)
            if self.keep == "last":
                order = order[::-1]
            key = inter.users[order] * (dom.num_items + 1) + inter.items[order]
            _, first = np.unique(key, return_index=True)
            kept = np.sort(order[first])
            report.record(name, len(inter), len(kept),
                          {f"repeated (user, item) pairs, kept the {self.keep}": len(inter) - len(kept)})
            out[name] = dom.with_interactions(inter.take(kept))
        return data.replace_domains(out), report


@dataclass(frozen=True)
class DropInvalid:
    """Drop rows with a missing user or item id, a missing order key, or a missing/out-of-range rating."""

    rating_min: float | None = None
    rating_max: float | None = None
    domains: Sequence[str] | None = None

    def __call__(self, data: CrossDomainData) -> tuple[CrossDomainData, StepReport]:
        report = StepReport("drop_invalid")
        out = dict(data.domains)
        for name in _selected(data, self.domains):
            dom = data.domains[name]
            inter = dom.interactions
            reasons = {"missing user id": inter.users == MISSING, "missing item id": inter.items == MISSING}
            if inter.order is not None:
                reasons["missing order key"] = np.isnan(inter.order)
            if inter.ratings is not None:
                r = inter.ratings
                reasons["missing rating"] = np.isnan(r)
                low = -np.inf if self.rating_min is None else self.rating_min
                high = np.inf if self.rating_max is None else self.rating_max
                reasons[f"rating outside [{low}, {high}]"] = ~np.isnan(r) & ((r < low) | (r > high))
            bad = np.zeros(len(inter), dtype=bool)
            removed = {}
            for reason, mask in reasons.items():  # each row is counted under its first reason
                removed[reason] = int((mask & ~bad).sum())
                bad |= mask
            report.record(name, len(inter), int((~bad).sum()), removed)
            out[name] = dom.with_interactions(inter.take(~bad))
        return data.replace_domains(out), report


@dataclass(frozen=True)
class ImplicitFeedback:
    """Turn ratings into implicit positives: keep rows with rating >= threshold, then drop the ratings
    (unless ``keep_ratings``). Without this step every rated row is a ranking positive, 1 star included;
    ``prepare`` notes that in its report."""

    threshold: float = 4.0
    keep_ratings: bool = False
    domains: Sequence[str] | None = None

    def __call__(self, data: CrossDomainData) -> tuple[CrossDomainData, StepReport]:
        report = StepReport("implicit")
        out = dict(data.domains)
        for name in _selected(data, self.domains):
            dom = data.domains[name]
            inter = dom.interactions
            if inter.ratings is None:
                raise ValueError(f"preprocess step implicit: domain {name!r} has no ratings to threshold; "
                                 "remove the step or restrict it with domains=[...]")
            keep = inter.ratings >= self.threshold
            kept = inter.take(keep)
            if not self.keep_ratings:
                kept = Interactions(kept.users, kept.items, None, kept.order)
            report.record(name, len(inter), int(keep.sum()),
                          {f"ratings below {self.threshold}": int((~keep).sum())})
            out[name] = dom.with_interactions(kept)
        return data.replace_domains(out), report


@dataclass(frozen=True)
class KCore:
    """Iteratively drop users with fewer than ``user_k`` and items with fewer than ``item_k`` rows
    (per domain) until every remaining user and item meets both thresholds."""

    user_k: int = 5
    item_k: int = 5
    domains: Sequence[str] | None = None

    def __call__(self, data: CrossDomainData) -> tuple[CrossDomainData, StepReport]:
        report = StepReport(f"kcore(user>={self.user_k}, item>={self.item_k})")
        out = dict(data.domains)
        for name in _selected(data, self.domains):
            dom = data.domains[name]
            inter = dom.interactions
            _require_ids(inter, name, "kcore")
            keep = np.ones(len(inter), dtype=bool)
            rounds = 0
            while True:
                u_count = np.bincount(inter.users[keep], minlength=data.num_users)
                i_count = np.bincount(inter.items[keep], minlength=dom.num_items)
                ok = (u_count[inter.users] >= self.user_k) & (i_count[inter.items] >= self.item_k)
                new_keep = keep & ok
                if new_keep.sum() == keep.sum():
                    break
                keep = new_keep
                rounds += 1
            report.record(name, len(inter), int(keep.sum()),
                          {f"rows of users/items below the k-core thresholds ({rounds} rounds)":
                           int((~keep).sum())})
            out[name] = dom.with_interactions(inter.take(keep))
        return data.replace_domains(out), report


@dataclass(frozen=True)
class SparsifyDomain:
    """Simulate a sparse domain. ``by='interactions'``: keep a random ``keep_fraction`` of its rows.
    ``by='users'``: keep the rows of a random ``keep_fraction`` of the users it shares with other
    domains; the other shared users lose all their rows in this domain.

    ``rows='all'`` (default) drops from every row before the split, so the held-out rows and the evaluated
    users change with the fraction. ``rows='train'`` runs after the split and drops training rows only: the
    same held-out rows and users at every fraction, so a dense and a sparse setting compare user for user.
    """

    domain: str
    keep_fraction: float
    by: str = "interactions"
    seed: int = 0
    # absent from the cache key at its default, so data prepared before the option keeps its key
    rows: str = field(default="all", metadata={"key_omits_default": True})

    def __post_init__(self) -> None:
        if self.rows not in ("all", "train"):
            raise ValueError(f"SparsifyDomain.rows must be 'all' (before the split) or 'train' (training rows, "
                             f"after the split), got {self.rows!r}")

    @property
    def after_split(self) -> bool:
        return self.rows == "train"

    def _keep(self, data: CrossDomainData) -> tuple[np.ndarray, str]:
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"SparsifyDomain.keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if self.by not in ("interactions", "users"):
            raise ValueError(f"SparsifyDomain.by must be 'interactions' or 'users', got {self.by!r}")
        inter = data.domain(self.domain).interactions
        rng = np.random.default_rng(self.seed)
        if self.by == "interactions":
            return rng.random(len(inter)) < self.keep_fraction, f"rows dropped at random (kept {self.keep_fraction:g})"
        others = [n for n in data.domain_names if n != self.domain]
        shared = np.unique(np.concatenate([data.overlapping_users(self.domain, o) for o in others] or
                                          [np.zeros(0, dtype=np.int64)]))
        dropped_users = shared[rng.random(len(shared)) >= self.keep_fraction]
        return ~np.isin(inter.users, dropped_users), f"rows of {len(dropped_users):,} of {len(shared):,} shared users"

    def __call__(self, data: CrossDomainData) -> tuple[CrossDomainData, StepReport]:
        keep, reason = self._keep(data)
        dom = data.domain(self.domain)
        report = StepReport(f"sparsify({self.by}, keep {self.keep_fraction:g}, every row before the split)")
        report.record(self.domain, len(keep), int(keep.sum()), {reason: int((~keep).sum())})
        out = dict(data.domains)
        out[self.domain] = dom.with_interactions(dom.interactions.take(keep))
        return data.replace_domains(out), report

    def keep_training(self, data: CrossDomainData, train: np.ndarray) -> tuple[np.ndarray, StepReport]:
        """``rows='train'``: bool [N_domain] rows to keep (every held-out row; a ``keep_fraction`` of the
        training rows, drawn as ``rows='all'`` draws over every row) and the step's report."""
        keep, reason = self._keep(data)
        keep = keep | ~train
        report = StepReport(f"sparsify({self.by}, keep {self.keep_fraction:g}, training rows after the split; "
                            "held-out rows and users unchanged)")
        report.record(self.domain, len(keep), int(keep.sum()), {f"training {reason}": int((~keep).sum())})
        return keep, report


def compact(data: CrossDomainData) -> tuple[CrossDomainData, StepReport]:
    """Drop items without interactions (per domain) and users without interactions anywhere; reindex."""
    report = StepReport("compact")
    used_users = np.unique(np.concatenate([d.interactions.users for d in data.domains.values()]))
    user_map = np.full(data.num_users, MISSING, dtype=np.int64)
    user_map[used_users] = np.arange(len(used_users))
    if len(used_users) < data.num_users:
        report.notes.append(f"users {data.num_users:,} -> {len(used_users):,} "
                            f"(removed {data.num_users - len(used_users):,} users with no interactions left)")
    out: dict[str, Domain] = {}
    for name, dom in data.domains.items():
        inter = dom.interactions
        used = np.unique(inter.items)
        item_map = np.full(dom.num_items, MISSING, dtype=np.int64)
        item_map[used] = np.arange(len(used))
        if len(used) < dom.num_items:
            report.notes.append(f"{name} items {dom.num_items:,} -> {len(used):,} "
                                f"(removed {dom.num_items - len(used):,} items with no interactions left)")
        out[name] = Domain(
            name=name,
            interactions=Interactions(user_map[inter.users], item_map[inter.items], inter.ratings, inter.order),
            item_ids=dom.item_ids[used],
            item_text=None if dom.item_text is None else dom.item_text[used],
            item_attributes=None if dom.item_attributes is None else dom.item_attributes[used],
            image_paths=None if dom.image_paths is None else dom.image_paths[used],
        )
    return CrossDomainData(user_ids=data.user_ids[used_users], domains=out), report


def run_steps(data: CrossDomainData, steps: Sequence) -> tuple[CrossDomainData, list[StepReport]]:
    """Apply the steps in order, then ``compact``. Rows with missing ids must be gone by the end."""
    reports = []
    for step in steps:
        data, rep = step(data)
        reports.append(rep)
    for name, dom in data.domains.items():
        inter = dom.interactions
        n_bad = int(((inter.users == MISSING) | (inter.items == MISSING)).sum())
        if n_bad:
            raise ValueError(f"domain {name!r} still has {n_bad:,} rows with a missing user or item id after "
                             "preprocessing; add a DropInvalid step (data.preprocess.drop_invalid) to drop them")
    data, rep = compact(data)
    reports.append(rep)
    return data, reports
