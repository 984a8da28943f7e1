"""Evaluation protocols: which candidates each held-out item is ranked against."""

from __future__ import annotations

from dataclasses import dataclass


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
