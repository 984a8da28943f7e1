"""Exact full ranking over a catalogue too large for one [rows, items] score matrix: items in chunks.

``rank_targets`` (translearn/metrics/ranking.py) needs every row's scores over all items at once, so an
evaluation batch holds ``rows x items`` floats (1,024 users x 1M items = 4 GB). The ranks only need, per
target, how many candidates score below it, at or below it, and how many are candidates at all: sums over
items. ``rank_targets_by_item_chunks`` accumulates those sums over item chunks that a callback scores one at
a time, so memory is ``rows x item_chunk`` whatever the catalogue, and the result equals ``rank_targets`` on
the whole matrix exactly (the same tie and non-finite rules; tested against it).

Used by the evaluator's full-ranking path (``translearn.evaluation.chunked``) when ``rows x items`` exceeds
``evaluation.max_scores``: ``score_chunk(i0, i1)`` gives the model's scores of items ``i0:i1`` for the batch's
queries, known items set to ``-inf`` within the chunk and the held-out targets' own scores (after the
``repeats`` rule) passed in as ``target_scores`` and written back into their chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from translearn.metrics.ranking import RankedTargets


def rank_targets_by_item_chunks(score_chunk: Callable[[int, int], Tensor], target_scores: Tensor, targets: Tensor,
                                n_items: int, item_chunk: int = 65536, count_ties: bool = True) -> RankedTargets:
    """``rank_targets(scores, targets)`` without the whole ``scores``: ``score_chunk(i0, i1)`` returns the
    float [B, i1 - i0] scores of items ``i0:i1`` (excluded items ``-inf``), called once per chunk in order;
    ``target_scores`` is float [B, T], ``scores.gather(1, targets.clamp(min=0))`` of the whole matrix;
    ``targets`` long [B, T], ``-1`` padding."""
    if target_scores.shape != targets.shape or targets.dim() != 2:
        raise ValueError(f"expected target_scores and targets of one [B, T] shape, got {tuple(target_scores.shape)} "
                         f"and {tuple(targets.shape)}")
    if item_chunk < 1:
        raise ValueError(f"item_chunk must be >= 1, got {item_chunk}")
    device = target_scores.device
    n_rows, n_tgt = targets.shape
    targets = targets.to(device=device, dtype=torch.long)
    valid = targets >= 0
    broken = valid & ~torch.isfinite(target_scores)

    # target-versus-target terms, exactly as rank_targets computes them
    position = torch.arange(n_tgt, device=device)
    earlier = position.unsqueeze(0) < position.unsqueeze(1)
    repeated = ((targets.unsqueeze(2) == targets.unsqueeze(1)) & earlier).any(2)
    distinct = valid & ~repeated
    s_j, s_t = target_scores.unsqueeze(1), target_scores.unsqueeze(2)
    tgt_gt = (~(s_j <= s_t) & distinct.unsqueeze(1)).sum(2)
    tgt_ge = (~(s_j < s_t) & distinct.unsqueeze(1)).sum(2)
    worst = target_scores.masked_fill(broken, float("-inf"))
    w_j, w_t = worst.unsqueeze(1), worst.unsqueeze(2)
    tgt_before = (((w_j > w_t) | ((w_j == w_t) & earlier.unsqueeze(0))) & valid.unsqueeze(1)).sum(2)

    # the big sums, one item chunk at a time (int64 counts: exact at any catalogue size)
    below = torch.zeros(n_rows, n_tgt, dtype=torch.int64, device=device)  # #(score < s_t)
    at_or_below = torch.zeros_like(below) if count_ties else below  # #(score <= s_t)
    n_candidates = torch.zeros(n_rows, dtype=torch.int64, device=device)
    for i0 in range(0, n_items, item_chunk):
        i1 = min(n_items, i0 + item_chunk)
        chunk = score_chunk(i0, i1)
        if chunk.shape != (n_rows, i1 - i0):
            raise ValueError(f"score_chunk({i0}, {i1}) returned {tuple(chunk.shape)}, expected {(n_rows, i1 - i0)}")
        chunk = chunk.to(device)
        # an item-major chunk (a transposed [items, rows] matrix, as DotHead writes it) is compared in its own
        # layout: the reductions then run over contiguous memory
        items_first = chunk.dim() == 2 and chunk.stride(0) == 1 and chunk.stride(1) != 1
        view, axis = (chunk.T, 0) if items_first else (chunk, 1)
        n_candidates += (view != float("-inf")).sum(axis)
        for t in range(n_tgt):
            col = target_scores[:, t].unsqueeze(axis)
            below[:, t] += (view < col).sum(axis)
            if count_ties:
                at_or_below[:, t] += (view <= col).sum(axis)

    n_negatives = n_candidates - distinct.sum(1)
    neg_ge = n_items - below - tgt_ge
    neg_above = n_items - at_or_below - tgt_gt if count_ties else neg_ge
    every = n_negatives.unsqueeze(1).expand_as(neg_ge)
    neg_ge = torch.where(broken, every, neg_ge)
    neg_above = torch.where(broken, every, neg_above)
    zero = torch.zeros((), device=device)
    ranks = torch.where(valid, (1 + neg_ge + tgt_before).float(), torch.full((), math.inf, device=device))
    return RankedTargets(ranks=ranks, n_targets=valid.sum(1), n_negatives=n_negatives,
                         neg_above=torch.where(valid, neg_above.float(), zero),
                         neg_tied=torch.where(valid, (neg_ge - neg_above).float(), zero))
