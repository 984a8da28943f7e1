"""Full ranking of one evaluation batch over item chunks: memory ``rows x chunk`` scores, whatever the catalogue.

``Evaluator.update`` calls it when a batch's score matrix (rows x items) would exceed ``evaluation.max_scores``.
It applies the rules of ``Evaluator.rank_into`` chunk by chunk and returns the ranks ``rank_targets`` gives on
the whole matrix (``translearn.metrics.item_chunks``):
- non-finite scores are refused with the same ``DivergedError`` (counted over every chunk, raised after the
  pass, before any metric is updated);
- known items are ``-inf`` (not candidates);
- a held-out item that is also known gets its own score back (``repeats="keep"``) or the lowest finite score
  (``"mask"``), and stays a candidate.

The held-out items' scores are read from the same item chunks as the ranking pass scores (a first pass over
the chunks that hold one; same boundaries, same shapes of the matrix product) and written back into each
chunk under the ``repeats`` rule, so a target is compared with itself and with the items that score alike
as in the whole matrix. That first pass costs one more scoring (not ranking) of those chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from translearn.metrics.guards import non_finite_error
from translearn.metrics.item_chunks import rank_targets_by_item_chunks
from translearn.metrics.ranking import RankedTargets
from translearn.models.recommender import ItemScorer


def _in_range(sorted_cols: Tensor, i0: int, i1: int) -> slice:
    """The positions of ``sorted_cols`` (sorted long [N]) holding values in ``[i0, i1)``."""
    bounds = torch.searchsorted(sorted_cols, torch.tensor([i0, i1], device=sorted_cols.device))
    return slice(int(bounds[0]), int(bounds[1]))


def _target_scores(score: ItemScorer, safe: Tensor, valid: Tensor, n_items: int, chunk: int,
                   buffer: Callable[[int], Tensor]) -> Tensor:
    """[B, T] scores of the items ``safe`` [B, T] for their own rows, read from the same item chunks (same
    boundaries, same shapes) as the ranking pass scores, so a held-out item ties exactly with the items that
    score alike (a first pass over the chunks that hold a held-out item)."""
    out = torch.zeros(safe.shape, device=safe.device)
    for i0 in torch.unique(safe[valid] // chunk).tolist():
        i0 *= chunk
        i1 = min(n_items, i0 + chunk)
        inside = (safe >= i0) & (safe < i1)
        scores = score(slice(i0, i1), out=buffer(len(safe) * (i1 - i0)))  # [B, i1 - i0]
        picked = scores.gather(1, (safe - i0).clamp(0, i1 - i0 - 1))
        out = torch.where(inside, picked.to(out.dtype), out)
    return torch.where(valid, out, out[:, :1])  # pads: the row's first target, as ``safe`` points there


def rank_by_item_chunks(score: ItemScorer, batch: dict[str, Tensor], n_items: int, max_scores: int, repeats: str,
                        count_ties: bool, buffer: Callable[[int], Tensor], domain: str) -> RankedTargets:
    """Rank the full-ranking ``batch``'s targets [B, T] among ``n_items`` items, scoring at most ``max_scores``
    (>= B: one item per chunk at least) at once; ``buffer(numel)``: reused float scratch memory."""
    users, targets = batch["users"], batch["targets"]
    n_rows = len(users)
    chunk = max(1, max_scores // max(1, n_rows))
    device = targets.device
    valid = targets >= 0
    safe = torch.where(valid, targets, targets[:, :1])  # pads point at the row's first target
    raw = _target_scores(score, safe, valid, n_items, chunk, buffer)
    ex_rows, ex_cols = batch["exclude_rows"].to(device), batch["exclude_cols"].to(device)
    kept = raw
    if repeats == "mask" and len(ex_cols):
        row_ids = torch.arange(n_rows, device=device).unsqueeze(1)
        known = torch.isin(row_ids * n_items + safe, ex_rows * n_items + ex_cols)
        kept = torch.where(known, torch.finfo(raw.dtype).min, raw)
    order = torch.argsort(ex_cols, stable=True)
    ex_rows, ex_cols = ex_rows[order], ex_cols[order]
    t_rows = torch.arange(n_rows, device=device).unsqueeze(1).expand_as(safe)[valid]
    t_cols, t_kept = safe[valid], kept[valid]
    order = torch.argsort(t_cols, stable=True)
    t_rows, t_cols, t_kept = t_rows[order], t_cols[order], t_kept[order]
    bad_rows = torch.zeros(n_rows, dtype=torch.bool, device=device)
    counts = [0, 0]  # non-finite scores, of which NaN

    def score_chunk(i0: int, i1: int) -> Tensor:
        scores = score(slice(i0, i1), out=buffer(n_rows * (i1 - i0)))  # [B, i1 - i0], may be a transposed view
        bad = ~torch.isfinite(scores)
        if bool(bad.any()):
            bad_rows.logical_or_(bad.any(dim=1))
            counts[0] += int(bad.sum())
            counts[1] += int(torch.isnan(scores).sum())
        part = _in_range(ex_cols, i0, i1)
        scores[ex_rows[part], ex_cols[part] - i0] = float("-inf")
        part = _in_range(t_cols, i0, i1)
        scores[t_rows[part], t_cols[part] - i0] = t_kept[part].to(scores.dtype)
        return scores

    ranked = rank_targets_by_item_chunks(score_chunk, kept, targets, n_items, item_chunk=chunk, count_ties=count_ties)
    if counts[0]:
        raise non_finite_error(bad_rows, counts[0], counts[1], domain, users)
    return ranked


__all__ = ["rank_by_item_chunks"]
