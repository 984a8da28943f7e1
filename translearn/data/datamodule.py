"""Lightning DataModule over ``PreparedData``: vectorised training batches and evaluation rows.

Training batch (one dict per step), for every domain ``d`` the strategy trains on:
    batch[d] = {"users": [B_d], "items": [B_d], "negatives": [B_d, N], "ratings": [B_d] (if any)}
The domain with the most training rows is the anchor: an epoch is one pass over its rows in batches
of B; every other domain contributes ``ceil(B * n_d / n_anchor)`` rows per step, so each domain is
seen about once per epoch and a sparse target does not shrink the epoch of a joint model. Each domain's
rows are drawn independently; a model that declares ``reads = {"paired"}`` gets ``PairedBatches`` instead:
shared users only, row ``b`` the same user in every domain.

Evaluation batch (target domain), under full ranking:
    {"users": [B], "targets": [B, T] (-1 pad), "exclude_rows": [E], "exclude_cols": [E], "n_candidates": [B],
     "ratings": [B, T]?}
where (exclude_rows, exclude_cols) lists the user's distinct known items to mask (training items, plus the
validation items when testing) and n_candidates counts the items left to rank against.
Under sampled negatives each row is one held-out interaction:
    {"users": [B], "targets": [B, 1] (= 0), "candidates": [B, 1 + K], "ratings": [B, 1]?}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from translearn.data.prepared import PreparedData
from translearn.data.sampling import NegativeSampler
from translearn.data.schema import Interactions
from translearn.data.sequence_data import HistorySpec, QueryEvalRows, SequenceTrainData, StreamBatchSampler
from translearn.data.splits import TEST
from translearn.evaluation.loaders import EvalLoader, eval_loaders


def _identity(batch: dict) -> dict:
    return batch


class CSR:
    """Items per user in compressed rows: ``items[indptr[u]:indptr[u + 1]]``."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_users: int) -> None:
        order = np.argsort(users, kind="stable")
        self.items = items[order].astype(np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))])

    def gather(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in ``users``, item) pairs of every listed user's items, vectorised."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.items[np.repeat(starts, lengths) + offsets]


def _seed_worker(worker_id: int) -> None:
    """In a data loader worker (``loader.num_workers`` > 0): a random stream of its own, drawn from the
    dataset's stream as the worker received it and the worker's id, so workers never repeat each other's
    negatives. Workers start afresh every epoch, so the draws stay reproducible (but differ from a run
    without workers)."""
    data = torch.utils.data.get_worker_info().dataset
    rng = getattr(data, "rng", None)
    if rng is None:
        return
    fresh = np.random.default_rng([int(rng.integers(2**62)), worker_id])
    if hasattr(data, "_reset"):
        data._reset(fresh)  # TrainBatches: also its permutations of the other domains' rows
    else:
        data.rng = fresh


def epoch_seed(seed: int, rank: int, epoch: int, stream: int) -> int:
    """A 63-bit seed derived from (seed, rank, epoch) alone, one per random ``stream``."""
    return int(np.random.SeedSequence([seed, rank, epoch, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class TrainBatches(Dataset):
    """Indexable by anchor-domain training row; ``__getitems__`` builds a whole step's batch at once.

    Negatives and the rows of non-anchor domains come from ``self.rng``: seeded with ``seed`` at
    construction, and reseeded from (seed, rank, epoch) by ``set_epoch`` so that an epoch's draws do not
    depend on the epochs before it (a resumed run repeats them exactly).
    """

    def __init__(self, prepared: PreparedData, domains: Sequence[str], num_negatives: int, seed: int,
                 rank: int = 0) -> None:
        if not domains:
            raise ValueError("TrainBatches needs at least one domain")
        self.domains = list(domains)
        self.num_negatives = num_negatives
        self.rows: dict[str, Interactions] = {d: prepared.train(d) for d in self.domains}
        for d, rows in self.rows.items():
            if len(rows) == 0:
                raise ValueError(f"domain {d!r} has no training interactions")
        self.samplers = {d: NegativeSampler(r.users, r.items, prepared.num_items(d)) for d, r in self.rows.items()}
        self.seed, self.rank = seed, rank
        self.anchor = max(self.domains, key=lambda d: len(self.rows[d]))  # ties: the first listed
        self.others = [d for d in self.domains if d != self.anchor]
        self._reset(np.random.default_rng(seed))

    def _reset(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._cursor = {d: 0 for d in self.others}
        self._perm = {d: self.rng.permutation(len(self.rows[d])) for d in self.others}

    def set_epoch(self, epoch: int) -> None:
        """Restart every random draw from (seed, rank, epoch)."""
        self._reset(np.random.default_rng(epoch_seed(self.seed, self.rank, epoch, 0)))

    def __len__(self) -> int:
        return len(self.rows[self.anchor])

    def _next_rows(self, domain: str, n: int) -> np.ndarray:
        """The next ``n`` rows of a non-anchor domain from a reshuffled-on-exhaustion permutation."""
        out = []
        while n > 0:
            perm, cur = self._perm[domain], self._cursor[domain]
            take = perm[cur : cur + n]
            out.append(take)
            n -= len(take)
            self._cursor[domain] = cur + len(take)
            if self._cursor[domain] >= len(perm):
                self._perm[domain] = self.rng.permutation(len(perm))
                self._cursor[domain] = 0
        return np.concatenate(out)

    def _part(self, domain: str, index: np.ndarray) -> dict[str, torch.Tensor]:
        rows = self.rows[domain].take(index)
        part = {"users": torch.from_numpy(rows.users), "items": torch.from_numpy(rows.items)}
        if self.num_negatives > 0:
            neg = self.samplers[domain].sample(rows.users, self.num_negatives, self.rng)
            part["negatives"] = torch.from_numpy(neg)
        if rows.ratings is not None:
            part["ratings"] = torch.from_numpy(rows.ratings.astype(np.float32))
        return part

    def __getitems__(self, indices: list[int]) -> dict[str, dict[str, torch.Tensor]]:
        index = np.asarray(indices, dtype=np.int64)
        batch = {self.anchor: self._part(self.anchor, index)}
        n_anchor = len(self)
        for d in self.others:
            size = math.ceil(len(index) * len(self.rows[d]) / n_anchor)
            batch[d] = self._part(d, self._next_rows(d, size))
        return batch

    def __getitem__(self, i: int) -> dict[str, dict[str, torch.Tensor]]:
        return self.__getitems__([i])


class PairedBatches(TrainBatches):
    """Paired training batches, for models that declare ``reads = {"paired"}`` (CoNet-style cross-connected
    towers, DTCDR-style shared-user fusion): every row of a step belongs to a **shared user** (training rows
    in every domain), and row ``b`` of each domain's part is the same user:

        batch[d] = {"users": [B] (the same tensor values in every domain), "items": [B], "negatives": [B, N]}

    An epoch is one pass over the anchor domain's training rows of shared users (the domain with the most
    such rows); each row is paired with one of the same user's training rows of every other domain, drawn
    uniformly. Only training rows are ever drawn (``PreparedData.train``); negatives as in ``TrainBatches``.
    """

    def __init__(self, prepared: PreparedData, domains: Sequence[str], num_negatives: int, seed: int,
                 rank: int = 0) -> None:
        super().__init__(prepared, domains, num_negatives, seed, rank)
        if len(self.domains) < 2:
            raise ValueError("paired batches need at least two training domains (a cross-domain strategy)")
        shared = np.ones(prepared.num_users, dtype=bool)
        for rows in self.rows.values():
            has = np.zeros(prepared.num_users, dtype=bool)
            has[rows.users] = True
            shared &= has
        if not shared.any():
            raise ValueError(f"paired batches: no user has training rows in every domain of {self.domains}")
        self.shared = np.flatnonzero(shared)
        keep = {d: np.flatnonzero(shared[r.users]) for d, r in self.rows.items()}  # rows of shared users
        self.anchor = max(self.domains, key=lambda d: len(keep[d]))
        self.others = [d for d in self.domains if d != self.anchor]
        self.anchor_rows = keep[self.anchor]
        # per other domain: each user's training row indices, in compressed rows
        self.user_rows = {d: CSR(self.rows[d].users, np.arange(len(self.rows[d])), prepared.num_users)
                          for d in self.others}

    def _reset(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __len__(self) -> int:
        return len(self.anchor_rows)

    def __getitems__(self, indices: list[int]) -> dict[str, dict[str, torch.Tensor]]:
        rows = self.anchor_rows[np.asarray(indices, dtype=np.int64)]
        users = self.rows[self.anchor].users[rows]
        batch = {self.anchor: self._part(self.anchor, rows)}
        for d in self.others:
            index = self.user_rows[d]
            starts, counts = index.indptr[users], index.indptr[users + 1] - index.indptr[users]
            picked = index.items[starts + (self.rng.random(len(users)) * counts).astype(np.int64)]
            batch[d] = self._part(d, picked)
        return batch


class EvalRows(Dataset):
    """Evaluation rows of the target domain for one role ('valid' or 'test')."""

    def __init__(self, prepared: PreparedData, role: str) -> None:
        target = prepared.target
        held = prepared.held_out(role)
        self.ratings = held.ratings
        self.negatives = prepared.eval_negatives.get(role)
        history = [prepared.train(target)] + ([prepared.held_out("valid")] if role == "test" else [])
        hist = Interactions.concat(history)
        self.num_items = prepared.num_items(target)
        self.history_keys = np.unique(hist.users * self.num_items + hist.items)  # distinct (user, item)
        self.history = CSR(self.history_keys // self.num_items, self.history_keys % self.num_items,
                           prepared.num_users)
        if self.negatives is not None:  # one row per held-out interaction
            self.row_users, self.row_items = held.users, held.items
        else:  # one row per user, all of the user's held-out items as targets
            # Users ordered by their number of held-out items, so a batch pads its targets to similar
            # counts (ranking costs one pass per target column; padding would cost passes for nothing).
            users, counts = np.unique(held.users, return_counts=True)
            self.row_users = users[np.argsort(counts, kind="stable")]
            self.targets = CSR(held.users, held.items, prepared.num_users)
            if held.ratings is not None:
                order = np.argsort(held.users, kind="stable")
                self.target_ratings = held.ratings[order]

    def __len__(self) -> int:
        return len(self.row_users)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        users = self.row_users[index]
        out = {"users": torch.from_numpy(users)}
        if self.negatives is not None:
            cand = np.concatenate([self.row_items[index, None], self.negatives[index]], axis=1)
            out["candidates"] = torch.from_numpy(cand)
            out["targets"] = torch.zeros(len(index), 1, dtype=torch.long)
            if self.ratings is not None:
                out["ratings"] = torch.from_numpy(self.ratings[index, None].astype(np.float32))
            return out
        rows, items = self.targets.gather(users)
        width = int(np.bincount(rows, minlength=len(users)).max())
        col = np.arange(len(rows)) - np.searchsorted(rows, rows)
        targets = np.full((len(users), width), -1, dtype=np.int64)
        targets[rows, col] = items
        out["targets"] = torch.from_numpy(targets)
        if self.ratings is not None:
            starts = self.targets.indptr[users]
            flat = np.repeat(starts, np.bincount(rows, minlength=len(users))) + col
            ratings = np.full((len(users), width), np.nan, dtype=np.float32)
            ratings[rows, col] = self.target_ratings[flat]
            out["ratings"] = torch.from_numpy(ratings)
        ex_rows, ex_cols = self.history.gather(users)
        out["exclude_rows"], out["exclude_cols"] = torch.from_numpy(ex_rows), torch.from_numpy(ex_cols)
        # Candidates = items minus the distinct known items that are not themselves held out: a held-out
        # item that is also known (a repeat) stays a candidate, ranked by its score (evaluation.repeats=keep)
        # or last (mask; see translearn.evaluation.Evaluator.rank_into).
        keys = users[rows] * self.num_items + items
        pos = np.minimum(np.searchsorted(self.history_keys, keys), max(len(self.history_keys) - 1, 0))
        repeat = np.bincount(rows[self.history_keys[pos] == keys], minlength=len(users)) if len(keys) else 0
        known = self.history.indptr[users + 1] - self.history.indptr[users]
        out["n_candidates"] = torch.from_numpy(self.num_items - known + repeat)
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])


class ShardSampler(DistributedSampler):
    """Evaluation sampler for DDP: each rank gets a disjoint strided shard, with no padding duplicates,
    so every held-out row is counted exactly once across ranks."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


class EpochSampler(DistributedSampler):
    """Training-row order for one epoch, a function of (seed, epoch) only; ``set_epoch`` (which Lightning
    calls at each epoch start, also after a resume) reseeds the dataset's draws and the global torch RNG
    (dropout and other in-model randomness) from (seed, rank, epoch). Under DDP each rank reads its shard
    of the same permutation, as with Lightning's own sampler."""

    def __init__(self, data: TrainBatches, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        data.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)
        torch.manual_seed(epoch_seed(self.seed, self.rank, epoch, 1))


def domain_view(prepared: PreparedData, domain: str) -> PreparedData:
    """``prepared`` seen with ``domain`` as the evaluated domain (the others as sources), full ranking;
    the arrays are shared, not copied."""
    others = tuple(d for d in prepared.domains if d != domain)
    return replace(prepared, target=domain, sources=others, eval_negatives={})


class CrossDomainDataModule(pl.LightningDataModule):
    """Training batches over ``train_domains`` (the largest is the anchor) and target evaluation rows."""

    def __init__(self, prepared: PreparedData, train_domains: Sequence[str] | None = None, batch_size: int = 2048,
                 num_negatives: int = 1, eval_batch_size: int = 512, seed: int = 0,
                 history: HistorySpec | None = None, sampled: PreparedData | None = None,
                 eval_domains: Sequence[str] = (), paired: bool = False, num_workers: int = 0,
                 pin_memory: bool = False) -> None:
        super().__init__()
        if num_workers < 0:
            raise ValueError(f"loader.num_workers must be >= 0, got {num_workers}")
        self.loader_args = {"num_workers": num_workers, "pin_memory": pin_memory,
                            **({"worker_init_fn": _seed_worker} if num_workers else {})}
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
        if num_negatives < 0:
            raise ValueError(f"data.num_negatives must be >= 0, got {num_negatives}")
        self.prepared = prepared
        self.train_domains = list(train_domains) if train_domains else [prepared.target]
        for d in self.train_domains:
            prepared.data.domain(d)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_negatives, self.seed = num_negatives, seed
        self.history = history  # set for models that read histories (sequence models)
        self.paired = paired  # models that read paired batches (reads={"paired"}): ``PairedBatches``
        # a second protocol (translearn.data.extra_protocol.sampled_view): its val/test rows are the loader
        # "target/sampled" of each stage, logged as <stage>/target/sampled/<metric>
        self.sampled = sampled
        # source domains evaluated after the target (full ranking over their items), one named loader each
        self.eval_domains = list(eval_domains)
        for d in self.eval_domains:
            if d not in prepared.sources or not (prepared.role_of(d) == TEST).any():
                raise ValueError(f"eval_domains: {d!r} is not a source with held-out rows (prepare(..., "
                                 "held_out_sources=[...]) holds them out)")

    def train_dataloader(self) -> DataLoader:
        if self.history is not None:
            return self._sequence_train()
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        batches = PairedBatches if self.paired else TrainBatches
        data = batches(self.prepared, self.train_domains, self.num_negatives, self.seed, rank=rank)
        sampler = EpochSampler(data, num_replicas=world, rank=rank, seed=self.seed)
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, collate_fn=_identity, **self.loader_args)

    def _sequence_train(self) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        data = SequenceTrainData(self.prepared, self.history, self.train_domains, self.num_negatives, self.seed)
        sampler = StreamBatchSampler(data, self.batch_size, self.seed, num_replicas=world, rank=rank)
        return DataLoader(data, batch_sampler=sampler, collate_fn=_identity, **self.loader_args)

    @property
    def eval_loaders(self) -> list[EvalLoader]:
        """What each validation / test dataloader holds, by name, in their order (``translearn.evaluation``):
        ``target`` (the primary protocol), ``target/sampled`` if there is a second protocol, each source."""
        primary = "sampled" if self.prepared.eval_negatives else "full"
        return eval_loaders(self.prepared.target, primary, self.sampled is not None, self.eval_domains)

    def _eval(self, role: str) -> DataLoader | list[DataLoader]:
        """The target's rows (primary protocol, then the sampled one if any), then each evaluated source's:
        one dataloader per entry of ``eval_loaders``."""
        views = [self.prepared, *([self.sampled] if self.sampled is not None else []),
                 *(domain_view(self.prepared, d) for d in self.eval_domains)]
        loaders = [self._eval_rows(view, role) for view in views]
        return loaders[0] if len(loaders) == 1 else loaders

    def _eval_rows(self, prepared: PreparedData, role: str) -> DataLoader:
        data = EvalRows(prepared, role) if self.history is None else QueryEvalRows(prepared, role, self.history)
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = ShardSampler(data, trainer.world_size, trainer.global_rank)
        return DataLoader(data, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler,
                          collate_fn=_identity, **self.loader_args)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval("valid")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval("test")
