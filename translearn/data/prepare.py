"""``prepare``: load -> preprocess -> split -> (normalise) -> evaluation negatives, cached by content hash.

The cache key covers the raw data fingerprint (file checksums or generator knobs), every step's
settings, the split, the protocol, the domain roles and the data seed, so any change gives a new entry
and a rerun with the same settings reads the entry instead of recomputing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from translearn.cache import content_key, entry_lock, read_entry, write_entry
from translearn.data.prepared import PreparedData
from translearn.data.preprocess import ImplicitFeedback, StepReport, run_steps
from translearn.data.protocols import FullRanking, SampledNegatives, check_negatives
from translearn.data.sampling import NegativeSampler
from translearn.data.schema import CrossDomainData
from translearn.data.sources.base import DataSource
from translearn.data.sources.images import missing_images
from translearn.data.splits import DROPPED, TEST, TRAIN, VALID, LeaveOneOut, SplitError, SplitRoles, split_roles
from translearn.errors import ConfigError

log = logging.getLogger(__name__)
FORMAT_VERSION = 7  # 2: exact integer ids, whole-row split cuts, exact dense-user negatives; 3: cold-start
# rounding; 4: order-key ties follow data.split.ties (default file_order, was: by item index); 5: the
# manifest records the tie rule (histories follow it); 6: roles for every domain (``<domain>/roles``); 7: item
# image paths (Domain.image_paths)


def _steps(preprocess: Mapping[str, Any] | Sequence[Any] | None) -> list[Any]:
    if preprocess is None:
        return []
    items = preprocess.values() if isinstance(preprocess, Mapping) else preprocess
    return [s for s in items if s is not None]


def _check_roles(data: CrossDomainData, target: str, sources: Sequence[str]) -> None:
    known = data.domain_names
    for name in [target, *sources]:
        if name not in known:
            raise ConfigError(f"unknown domain {name!r} (data.target_domain / data.source_domains); "
                              f"this data set has: {', '.join(known)}",
                              config_key="data.target_domain" if name == target else "data.source_domains")
    if target in sources:
        raise ConfigError(f"domain {target!r} is both the target and a source (data.source_domains)",
                          config_key="data.source_domains")


def prepare(source: DataSource, target: str, sources: Sequence[str] = (),
            preprocess: Mapping[str, Any] | Sequence[Any] | None = None, split: Any = None,
            protocol: FullRanking | SampledNegatives | None = None, seed: int = 0,
            cache_dir: str | Path | None = None, held_out_sources: Sequence[str] = ()) -> PreparedData:
    """Build (or read from ``cache_dir``) the prepared data for one target and its source domains.

    held_out_sources: source domains that also get valid/test rows, for evaluating them
                      (``evaluation.domains``): leave-one-out over each user's rows of that source, with the
                      split's tie rule, after the split. It removes those rows from the source's training
                      data, so it is off unless asked for, and part of the cache key when on.
    """
    split = split if split is not None else LeaveOneOut()
    protocol = protocol if protocol is not None else FullRanking()
    steps = _steps(preprocess)
    sources = tuple(sources)
    held_out_sources = tuple(dict.fromkeys(held_out_sources))
    unknown = [d for d in held_out_sources if d not in sources]
    if unknown:
        raise ConfigError(f"evaluation.domains: {', '.join(map(repr, unknown))} is not a source domain of this "
                          f"run (data.source_domains: {', '.join(sources) or 'none'})", config_key="evaluation.domains")
    parts = {"version": FORMAT_VERSION, "data": source.fingerprint(), "target": target, "sources": list(sources),
             "preprocess": steps, "split": split, "protocol": protocol, "seed": seed}
    if held_out_sources:  # absent when off, so every earlier cache key stays valid
        parts["held_out_sources"] = list(held_out_sources)
    key = content_key(parts)
    split_key = content_key({k: v for k, v in parts.items() if k != "protocol"})  # rows and roles, not negatives
    entry = Path(cache_dir) / key[:24] if cache_dir is not None else None
    with entry_lock(entry):  # parallel jobs: one builds, the others wait and read
        if entry is not None:
            cached = read_entry(entry, PreparedData.load, "prepared data")
            if cached is not None:
                log.info("prepared data read from cache %s", entry)
                object.__setattr__(cached, "split_key", split_key)
                return cached
        prepared = _build(source, target, sources, steps, split, protocol, seed, key, held_out_sources)
        if entry is not None:
            write_entry(entry, prepared.save)
            log.info("prepared data cached in %s", entry)
            # read back mapped, as every later run and every other rank reads it: one copy per machine
            prepared = PreparedData.load(entry)
    object.__setattr__(prepared, "split_key", split_key)
    return prepared


def _build(source: DataSource, target: str, sources: tuple[str, ...], steps: list[Any], split: Any,
           protocol: Any, seed: int, key: str, held_out_sources: tuple[str, ...] = ()) -> PreparedData:
    data = source.load()
    _check_roles(data, target, sources)
    loaded = StepReport("load")
    for name in data.domain_names:
        n = len(data.domains[name].interactions)
        unused = name not in (target, *sources)
        loaded.record(name, n, 0 if unused else n, {"rows of a domain not used as target or source": n}
                      if unused else {})
    data = data.replace_domains({n: d for n, d in data.domains.items() if n in (target, *sources)})
    for name, dom in data.domains.items():  # counted here so that the report says it (the towers refuse too many)
        if dom.image_paths is not None:
            missing = missing_images(dom.image_paths)
            if missing:
                loaded.notes.append(f"{name}: {missing:,} of {dom.num_items:,} items have no image (no path, or no "
                                    "such file); an image tower gives them a zero vector (data.max_missing_images)")
    pre = [s for s in steps if not getattr(s, "after_split", False)]
    post = [s for s in steps if getattr(s, "after_split", False)]
    data, reports = run_steps(data, pre)
    reports.insert(0, loaded)
    positives = _ratings_note(data, pre)
    if positives.notes:
        reports.append(positives)
    if target not in data.domains or len(data.domains[target].interactions) == 0:
        raise SplitError(f"preprocessing left no interactions in the target domain {target!r}")
    emptied = [name for name in sources if len(data.domains[name].interactions) == 0]
    if emptied:  # a model would get an item table of 0 rows
        raise SplitError(f"preprocessing ({', '.join(type(s).__name__ for s in pre) or 'none'}) left no interactions "
                         f"in the source domain {emptied[0]!r}; use a milder data.preprocess (e.g. a smaller k-core) "
                         "or leave the domain out of data.source_domains")

    result = split_roles(split(data, target, sources, seed), data, target,
                         getattr(split, "drop_reason", "rows the split removed"))
    data, roles, split_report = _apply_split(data, result, f"split({type(split).__name__})")
    for name in held_out_sources:
        roles[name] = _source_holdout(data, name, roles[name], getattr(split, "ties", "file_order"), seed)
        split_report.notes.append(f"{name}: leave-one-out valid/test rows held out of its training data for "
                                  "evaluating it (evaluation.domains)")
    counts = {name: int((roles[target] == r).sum()) for name, r in (("train", TRAIN), ("valid", VALID),
                                                                    ("test", TEST))}
    split_report.notes.append(f"{target}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    for name in sources:
        if (roles[name] != TRAIN).any():
            split_report.notes.append(f"{name}: " + ", ".join(
                f"{k} {int((roles[name] == r).sum()):,}" for k, r in (("train", TRAIN), ("valid", VALID),
                                                                      ("test", TEST))))
    if data.domains[target].interactions.order is None and not getattr(split, "held_out_from_files", False):
        split_report.notes.append(f"{target} has no order key: held-out items are chosen at random (seed {seed})")
    if counts["valid"] == 0 or counts["test"] == 0:
        raise SplitError(f"the split {type(split).__name__} left no {'valid' if counts['valid'] == 0 else 'test'} "
                         f"interactions in domain {target!r}; the domain is too small or too sparse for it")
    reports.append(split_report)

    for step in post:
        if hasattr(step, "keep_training"):  # drops training rows of one domain (SparsifyDomain(rows='train'))
            keep, rep = step.keep_training(data, roles[step.domain] == TRAIN)
            dom = data.domain(step.domain)
            sparse = dom.with_interactions(dom.interactions.take(keep))
            data = data.replace_domains({**data.domains, step.domain: sparse})
            roles[step.domain] = roles[step.domain][keep]
            reports.append(rep)
            continue
        rep = StepReport(type(step).__name__)
        new = {}
        for name, dom in data.domains.items():  # fitted on TRAIN rows only
            new[name] = dom.with_interactions(step.apply(name, dom.interactions, roles[name] == TRAIN,
                                                         data.num_users, rep))
        data = data.replace_domains(new)
        reports.append(rep)

    negatives = {}
    if isinstance(protocol, SampledNegatives):
        negatives = _eval_negatives(data, target, roles[target], protocol.num_negatives, seed)
    lines = tuple(line for r in reports for line in r.lines())
    return PreparedData(data, target, sources, roles, negatives, lines, key, type(split).__name__,
                        getattr(split, "ties", "file_order"))


def _apply_split(data: CrossDomainData, result: SplitRoles,
                 step: str) -> tuple[CrossDomainData, dict[str, np.ndarray], StepReport]:
    """Delete every domain's DROPPED rows (the report records how many and why); the roles of the rest."""
    report = StepReport(step)
    domains, roles = dict(data.domains), {}
    for name, r in result.roles.items():
        keep = r != DROPPED
        if not keep.all():
            report.record(name, len(r), int(keep.sum()), {result.dropped[name]: int((~keep).sum())})
            domains[name] = domains[name].with_interactions(domains[name].interactions.take(keep))
        roles[name] = r[keep]
    report.notes.extend(result.notes)
    return data.replace_domains(domains), roles, report


def _source_holdout(data: CrossDomainData, name: str, roles: np.ndarray, ties: str, seed: int) -> np.ndarray:
    """int8 [N_name]: leave-one-out roles among the TRAIN rows of source ``name`` (other roles kept)."""
    if (roles != TRAIN).any():
        raise SplitError(f"evaluation.domains: the split already holds out rows of {name!r}; it cannot be "
                         "held out again for source evaluation")
    out = LeaveOneOut(ties)(data, name, (), seed).astype(np.int8)
    if not (out == TEST).any():
        raise SplitError(f"evaluation.domains: no user has 2+ rows in source {name!r}, so it has no test rows")
    return out


def _ratings_note(data: CrossDomainData, steps: list[Any]) -> StepReport:
    """A note per domain whose rated rows all count as ranking positives (no ImplicitFeedback step on it)."""
    report = StepReport("positives")
    thresholded = set()
    for step in steps:
        if isinstance(step, ImplicitFeedback):
            thresholded.update(data.domain_names if step.domains is None else step.domains)
    for name in data.domain_names:
        ratings = data.domains[name].interactions.ratings
        if ratings is None or name in thresholded:
            continue
        rated = ratings[~np.isnan(ratings)]
        if len(rated) == 0:
            continue
        report.notes.append(
            f"{name}: {len(rated):,} rated rows all count as positives for ranking (ratings "
            f"{float(rated.min()):g}-{float(rated.max()):g}); add data.preprocess.implicit (ImplicitFeedback "
            "threshold) to keep only high ratings")
    return report


def _eval_negatives(data: CrossDomainData, target: str, roles: np.ndarray, n: int, seed: int,
                    config_key: str = "data.protocol.num_negatives") -> dict:
    """Per valid/test row, ``n`` items the user never interacted with in the target (any role); refused
    (``check_negatives``, naming ``config_key``) when a held-out user has fewer such items than ``n``."""
    dom = data.domains[target]
    inter = dom.interactions
    check_negatives(n, dom.num_items, inter.users, inter.items, inter.users[roles != TRAIN], target, config_key)
    positives = NegativeSampler(inter.users, inter.items, dom.num_items)
    rng = np.random.default_rng([seed, 7])
    out = {}
    for role, r in (("valid", VALID), ("test", TEST)):
        users = inter.users[roles == r]
        out[role] = positives.sample(users, n, rng)
    return out
