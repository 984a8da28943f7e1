"""Training batches of per-user sequences for one-pass causal training, bucketed by length.

A batch (one dict per step), right-padded to the longest sequence of the batch:
    {"users": [B], "history": [B, L] tokens (0 = pad), "history_domain": [B, L] (0 on pad),
     "history_len": [B], "labels": [B, L] item index in its domain (-1 = no label),
     "label_domain": [B, L] domain id of the label (-1 = no label)}
Position j holds the j-th input item; ``labels[b, j]`` is the item that follows it, so a causal model's
output at position j predicts ``labels[b, j]``. ``L`` is at most ``max_len``.

``BucketBatchSampler`` groups sequences of similar length so a batch is trimmed to little padding; its
batches depend only on (seed, epoch), and under DDP each rank takes every ``num_replicas``-th batch.
Use both with ``DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda b: b)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from translearn.data.history import TrainSequences


class SequenceBatches(Dataset):
    """Indexable by sequence; ``__getitems__`` builds a whole batch at once (see the module docstring)."""

    def __init__(self, sequences: TrainSequences) -> None:
        self.seq = sequences
        self.lengths = sequences.lengths - 1  # inputs (= labels) per sequence

    def __len__(self) -> int:
        return len(self.seq)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        n_in = self.lengths[index]
        width = max(1, int(n_in.max(initial=0)))
        rows = np.repeat(np.arange(len(index)), n_in)
        col = np.arange(n_in.sum()) - np.repeat(np.cumsum(n_in) - n_in, n_in)
        first = np.repeat(self.seq.indptr[index], n_in) + col  # input j of row b sits at indptr + j
        history = np.zeros((len(index), width), dtype=np.int64)
        history_domain = np.zeros((len(index), width), dtype=np.int64)
        labels = np.full((len(index), width), -1, dtype=np.int64)
        label_domain = np.full((len(index), width), -1, dtype=np.int64)
        history[rows, col] = self.seq.tokens[first]
        history_domain[rows, col] = self.seq.domain[first]
        labels[rows, col] = self.seq.items[first + 1]
        label_domain[rows, col] = self.seq.domain[first + 1]
        return {"users": torch.from_numpy(self.seq.users[index]), "history": torch.from_numpy(history),
                "history_domain": torch.from_numpy(history_domain), "history_len": torch.from_numpy(n_in),
                "labels": torch.from_numpy(labels), "label_domain": torch.from_numpy(label_domain)}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                   bucket_batches: int = 32) -> list[np.ndarray]:
    """Shuffle, cut into chunks of ``bucket_batches * batch_size``, sort each chunk by length, cut it into
    batches, and shuffle the batches. Returns the index arrays of one epoch (every index exactly once)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    perm = rng.permutation(len(lengths))
    chunk = batch_size * max(1, bucket_batches)
    batches = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def num_bucket_batches(n: int, batch_size: int, bucket_batches: int = 32) -> int:
    """How many batches ``bucket_batches`` makes of ``n`` sequences (without drawing them)."""
    chunk = batch_size * max(1, bucket_batches)
    full, rest = divmod(n, chunk)
    return full * math.ceil(chunk / batch_size) + math.ceil(rest / batch_size)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length sequences, deterministic per (seed, epoch). ``set_epoch`` must be called each
    epoch: Lightning calls it at every epoch start (also after a resume) through ``batch_sampler.sampler``,
    which is this object; a plain loop must call it itself. Under DDP, rank r takes batches r, r + R, ...
    of the epoch's list, with the list cycled so every rank has the same number of batches."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, bucket_batches: int = 32,
                 num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__()
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.lengths, self.batch_size, self.seed = np.asarray(lengths), batch_size, seed
        self.bucket_batches, self.num_replicas, self.rank = bucket_batches, num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> BucketBatchSampler:
        """Itself: Lightning sets the epoch on ``loader.batch_sampler.sampler``, not on the batch sampler."""
        return self

    def _num_batches(self) -> int:
        return num_bucket_batches(len(self.lengths), self.batch_size, self.bucket_batches)

    def __len__(self) -> int:
        return math.ceil(self._num_batches() / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = bucket_batches(self.lengths, self.batch_size, rng, self.bucket_batches)
        if not batches:
            return iter([])
        total = len(self) * self.num_replicas
        mine = [batches[i % len(batches)] for i in range(self.rank, total, self.num_replicas)]
        return iter([b.tolist() for b in mine])
