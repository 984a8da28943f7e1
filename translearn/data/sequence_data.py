"""Data for models that read histories: training streams of one-pass sequences and evaluation queries.

Training (``SequenceTrainData``): each *stream* is one set of per-user sequences. Under
``history_scope='all'`` there is one stream, the user's interleaved training rows of every history domain,
and every training domain reads its own labels from the same batch (one forward for all). Under
``history_scope='target'`` each training domain has its own stream (a domain's history holds only its own
items). The stream with the most labels is the anchor: an epoch is one pass over its sequences in
length-bucketed batches (``sequence_batches.BucketBatchSampler``); every other stream contributes
``ceil(B * n_s / n_anchor)`` sequences per step, cycling. A step's batch is ``{domain: part}`` with the
part of ``sequence_batches.SequenceBatches`` (plus ``"negatives" [B, L, K]`` uniform items of the label's
domain when the loss needs sampled negatives). Batches depend only on (seed, rank, epoch).

Evaluation (``QueryEvalRows``): one row per held-out target with its own cut history
(``HistoryIndex.eval_queries``). Under full ranking the user's known items are masked as for id models,
and so are the user's other held-out items of the same role (ratio, temporal and cold-start splits give
several per user): each row ranks exactly one target.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from translearn.data.history import EvalQueries, HistoryIndex
from translearn.data.prepared import PreparedData
from translearn.data.schema import Interactions
from translearn.data.sequence_batches import SequenceBatches, bucket_batches, num_bucket_batches


@dataclass(frozen=True)
class HistorySpec:
    """What a history-reading model needs from the data: its token domains (in token order), the
    history scope (``target`` or ``all``) and the longest history it reads."""

    domains: tuple[str, ...]
    scope: str
    max_len: int

    @classmethod
    def of(cls, model: object) -> HistorySpec | None:
        """The spec of a model with ``needs_history > 0``, else None (id models)."""
        if not getattr(model, "needs_history", 0):
            return None
        return cls(tuple(model.history_domains), model.history_scope, int(model.needs_history))


class SequenceTrainData(Dataset):
    """Training streams (see the module docstring); indexed by ``(stream, sequence)`` pairs that
    ``StreamBatchSampler`` yields."""

    def __init__(self, prepared: PreparedData, spec: HistorySpec, train_domains: Sequence[str],
                 num_negatives: int = 0, seed: int = 0) -> None:
        index = HistoryIndex(prepared, scope=spec.scope, seed=seed, domains=spec.domains)
        missing = [d for d in train_domains if d not in spec.domains]
        if missing:
            raise ValueError(f"the sequence model has no items of the training domains {missing}")
        if spec.scope == "all":
            groups = [list(spec.domains)]
            self.stream_of = {d: 0 for d in train_domains}
        else:
            groups = [[d] for d in train_domains]
            self.stream_of = {d: k for k, d in enumerate(train_domains)}
        self.streams = [SequenceBatches(index.train_sequences(spec.max_len, g, long="windows")) for g in groups]
        for g, stream in zip(groups, self.streams, strict=True):
            if len(stream) == 0:
                raise ValueError(f"no user has 2+ training rows in {', '.join(g)}: nothing to train a sequence "
                                 "model on")
        self.num_items = np.array([prepared.num_items(d) for d in spec.domains], dtype=np.int64)
        self.num_negatives, self.seed = num_negatives, seed
        self.rng = np.random.default_rng(seed)

    def labels(self, stream: int) -> int:
        return int(self.streams[stream].lengths.sum())

    def __len__(self) -> int:
        return sum(len(s) for s in self.streams)

    def __getitems__(self, pairs: list[tuple[int, int]]) -> dict[str, dict[str, torch.Tensor]]:
        by_stream: dict[int, list[int]] = {}
        for stream, i in pairs:
            by_stream.setdefault(stream, []).append(i)
        parts = {}
        for stream, idx in by_stream.items():
            part = self.streams[stream].__getitems__(idx)
            if self.num_negatives > 0:
                dom = part["label_domain"].clamp(min=0).numpy()
                draw = self.rng.random((*dom.shape, self.num_negatives))
                part["negatives"] = torch.from_numpy((draw * self.num_items[dom][..., None]).astype(np.int64))
            parts[stream] = part
        return {d: parts[s] for d, s in self.stream_of.items() if s in parts}


class StreamBatchSampler(Sampler[list[tuple[int, int]]]):
    """Steps of about ``batch_size`` labelled positions (training rows) each. One epoch = the anchor stream's
    bucketed batches; other streams add proportional batches, cycling.
    Deterministic per (seed, epoch) (``set_epoch``, which Lightning calls); the data set's negative
    sampler is reseeded from the same numbers. Under DDP rank r takes every num_replicas-th step."""

    def __init__(self, data: SequenceTrainData, batch_size: int, seed: int, num_replicas: int = 1,
                 rank: int = 0) -> None:
        super().__init__()
        self.data, self.rows, self.seed = data, batch_size, seed
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        counts = [data.labels(s) for s in range(len(data.streams))]
        self.anchor = max(range(len(counts)), key=lambda s: counts[s])
        self.share = {s: counts[s] / max(counts[self.anchor], 1) for s in range(len(counts)) if s != self.anchor}
        # ``batch_size`` counts training rows (labels), as for id models: sequences per step = rows / mean labels
        # per sequence (Office: 2048 rows -> about 290 sequences, near RecBole's 256), so an epoch has about
        # as many steps for a sequence model as for MF on the same data.
        mean_labels = counts[self.anchor] / max(len(data.streams[self.anchor]), 1)
        self.batch_size = max(1, round(batch_size / max(mean_labels, 1.0)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> StreamBatchSampler:
        """Itself: Lightning sets the epoch on ``loader.batch_sampler.sampler``."""
        return self

    def _steps(self) -> int:
        return num_bucket_batches(len(self.data.streams[self.anchor]), self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self._steps() / self.num_replicas)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.data.rng = np.random.default_rng([self.seed, self.epoch, self.rank, 1])
        # dropout and other in-model randomness: a function of (seed, rank, epoch), so a resumed run repeats it
        torch.manual_seed(int(np.random.SeedSequence([self.seed, self.rank, self.epoch, 1]).generate_state(1)[0]))
        anchor = bucket_batches(self.data.streams[self.anchor].lengths, self.batch_size, rng)
        others = {s: rng.permutation(len(self.data.streams[s])) for s in self.share}
        cursor = dict.fromkeys(self.share, 0)
        total = math.ceil(len(anchor) / self.num_replicas) * self.num_replicas
        for step in range(total):
            batch = [(self.anchor, int(i)) for i in anchor[step % len(anchor)]]
            for s, share in self.share.items():
                n = max(1, math.ceil(len(batch) * share))
                perm = others[s]
                take = [(perm[(cursor[s] + j) % len(perm)]) for j in range(n)]
                cursor[s] = (cursor[s] + n) % len(perm)
                batch += [(s, int(i)) for i in take]
            if step % self.num_replicas == self.rank:
                yield batch


class QueryEvalRows(Dataset):
    """Evaluation rows of one role for a history-reading model: one row per held-out target.

    Full ranking: {"users" [B], "targets" [B, 1], "history" [B, L], "history_domain" [B, L],
    "history_len" [B], "exclude_rows" [E], "exclude_cols" [E], "n_candidates" [B]}; sampled:
    {"users", "targets" [B, 1] (= 0), "candidates" [B, 1 + K], history keys}. Known items (training, and
    validation items at test time) and the user's other held-out items of the role are masked.
    """

    def __init__(self, prepared: PreparedData, role: str, spec: HistorySpec, seed: int = 0) -> None:
        index = HistoryIndex(prepared, scope=spec.scope, seed=seed, domains=spec.domains)
        self.queries: EvalQueries = index.eval_queries(role, spec.max_len)
        # Rows ordered by history length, so a batch is trimmed to similar lengths (the encoder's cost).
        self.order = np.argsort(self.queries.lengths, kind="stable")
        self.num_items = prepared.num_items(prepared.target)
        self.negatives = prepared.eval_negatives.get(role)  # row-aligned with held_out(role): same row order
        held = prepared.held_out(role)
        self.ratings = held.ratings
        n = self.num_items
        # Per row, the items to mask: the user's known items and the role's other held-out items.
        known = Interactions.concat([prepared.train(prepared.target)]
                                    + ([prepared.held_out("valid")] if role == "test" else []))
        known_keys = np.unique(known.users.astype(np.int64) * n + known.items)
        role_keys = held.users.astype(np.int64) * n + held.items
        masked = np.union1d(known_keys, role_keys)
        self.masked_keys, self.known_keys = masked, known_keys
        ptr = np.searchsorted(masked, np.arange(prepared.num_users + 1, dtype=np.int64) * n)
        self.indptr = ptr

    def __len__(self) -> int:
        return len(self.queries)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = self.order[np.asarray(indices, dtype=np.int64)]
        out = self.queries.batch(index)
        targets = out["targets"].numpy()
        users = out["users"].numpy()
        out["targets"] = out["targets"].unsqueeze(1)
        if self.ratings is not None:
            out["ratings"] = torch.from_numpy(self.ratings[index, None].astype(np.float32))
        if self.negatives is not None:
            cand = np.concatenate([targets[:, None], self.negatives[index]], axis=1)
            out["candidates"] = torch.from_numpy(cand)
            out["targets"] = torch.zeros(len(index), 1, dtype=torch.long)
            return out
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        flat = np.repeat(starts, lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = self.masked_keys[flat] % self.num_items
        key = users * self.num_items + targets
        pos = np.minimum(np.searchsorted(self.known_keys, key), max(len(self.known_keys) - 1, 0))
        repeat = self.known_keys[pos] == key if len(self.known_keys) else np.zeros(len(key), dtype=bool)
        # The row's own target is masked only when it is also a known item (a repeat: Evaluator.rank_into then applies
        # evaluation.repeats); it always counts as a candidate.
        drop = (cols == targets[rows]) & ~repeat[rows]
        rows, cols = rows[~drop], cols[~drop]
        out["exclude_rows"], out["exclude_cols"] = torch.from_numpy(rows), torch.from_numpy(cols)
        masked = np.bincount(rows, minlength=len(users)).astype(np.int64)
        out["n_candidates"] = torch.from_numpy(self.num_items - masked + repeat.astype(np.int64))
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])
