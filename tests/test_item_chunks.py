"""Full ranking over item chunks equals ranking the whole score matrix, ties and non-finite scores included."""

from __future__ import annotations

import pytest
import torch

from translearn.metrics.item_chunks import rank_targets_by_item_chunks
from translearn.metrics.ranking import rank_targets


def _case(seed: int, rows: int = 7, items: int = 53, n_tgt: int = 3):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (rows, items), generator=g).float()  # few values: many ties
    scores[torch.rand(rows, items, generator=g) < 0.2] = float("-inf")  # known items
    scores[0, 5] = float("nan")
    scores[1, 7] = float("inf")
    targets = torch.randint(0, items, (rows, n_tgt), generator=g)
    targets[2, 1:] = -1  # padding
    targets[3, 2] = targets[3, 0]  # a repeated target
    targets[0, 0], targets[1, 1] = 5, 7  # a NaN and an infinite target
    return scores, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("item_chunk", [1, 10, 53, 1000])
@pytest.mark.parametrize("count_ties", [True, False])
def test_chunks_over_items_give_the_exact_ranks(seed, item_chunk, count_ties):
    scores, targets = _case(seed)
    whole = rank_targets(scores.clone(), targets, count_ties=count_ties)
    calls = []

    def score_chunk(i0: int, i1: int) -> torch.Tensor:
        calls.append((i0, i1))
        return scores[:, i0:i1]

    target_scores = scores.gather(1, targets.clamp(min=0))
    chunked = rank_targets_by_item_chunks(score_chunk, target_scores, targets, scores.shape[1], item_chunk,
                                          count_ties=count_ties)
    for name in whole._fields:
        assert torch.equal(getattr(whole, name).float(), getattr(chunked, name).float()), name
    assert len(calls) == -(-scores.shape[1] // item_chunk) and max(b - a for a, b in calls) <= item_chunk


def test_a_wrong_chunk_shape_is_refused():
    with pytest.raises(ValueError, match="score_chunk"):
        rank_targets_by_item_chunks(lambda a, b: torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1).long(), 5, 2)
