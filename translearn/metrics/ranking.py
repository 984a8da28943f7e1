"""Ranking of held-out targets among candidate items, and top-k ranking metrics.

`rank_targets` turns a score matrix into per-target ranks once; the metrics below only read the
resulting `RankedTargets`, so any number of metrics can share one ranking pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric

# Upper bound on the elements of one [rows, targets, items] comparison. On CPU, smaller blocks (about one
# target column of a 512 x 16k batch) are markedly faster than large broadcast blocks.
_CHUNK_ELEMS = 64 * 1024 * 1024
_CPU_CHUNK_ELEMS = 8 * 1024 * 1024


class RankedTargets(NamedTuple):
    """Result of `rank_targets` for B rows with at most T targets each."""

    ranks: Tensor  # float [B, T]: 1-based rank of each target among the candidates; +inf for padding
    n_targets: Tensor  # long [B]: number of real (non-padded) targets per row
    n_negatives: Tensor  # long [B]: candidates that are neither excluded (-inf) nor targets
    neg_above: Tensor  # float [B, T]: negatives scored strictly higher than the target (0 for padding)
    neg_tied: Tensor  # float [B, T]: negatives scored exactly equal to the target (0 for padding)


def rank_targets(scores: Tensor, targets: Tensor, chunk_elems: int | None = None,
                 n_candidates: Tensor | None = None, workspace: Tensor | None = None,
                 count_ties: bool = True) -> RankedTargets:
    """Rank each row's held-out targets among that row's candidate items.

    Args:
        scores: float [B, I], a score per candidate item. Excluded items (e.g. the user's training
            history) must already be ``-inf``; they are not candidates and never count as negatives.
            Scores of a diverged model may be NaN or infinite: see "Non-finite scores" below.
        targets: long [B, T], column indices into ``scores``; ``-1`` is padding. Each row has >= 1 target.
        chunk_elems: upper bound on the elements of one [rows, T-chunk, I] comparison; default 64M
            (8M on CPU). Rows are chunked too when a single target column exceeds it.
        n_candidates: optional long [B], the number of non-excluded items per row when the caller knows
            it (saves one pass over ``scores``).
        workspace: optional float tensor reused as the comparison buffer across calls (avoids allocating
            and page-faulting a fresh buffer per batch); used when it is large enough and of the right dtype.
        count_ties: whether to separate negatives tied with a target from those above it (only AUC reads
            ``neg_above``/``neg_tied``); False saves one pass and reports ties as "above" (``neg_tied`` = 0).

    Tie rule (pessimistic, so that a constant scorer cannot look good): the rank of target t is
    ``1 + #(negatives with score >= s_t) + #(other targets with score > s_t)
    + #(other targets j with score == s_t and j < t)``, where j is the position in the row of ``targets``.
    Negatives tied with a target are placed above it; tied targets get distinct consecutive ranks.

    Non-finite scores (pessimistic, so that a diverged model cannot look good): a target whose score is
    NaN or +-inf ranks below every negative and every finite-scored target (rank
    ``1 + n_negatives + #(finite-scored targets) + #(earlier non-finite targets)``); a NaN negative counts
    as scored above every target. Both cost no extra pass: candidates are counted as "not below" the
    target (``I - #(score < s_t)``), which a NaN never is, and non-finite target columns are overwritten
    on the small [B, T] counts afterwards.
    """
    if scores.dim() != 2 or targets.dim() != 2 or scores.shape[0] != targets.shape[0]:
        raise ValueError(
            f"expected scores [B, I] and targets [B, T], got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    n_rows, n_items = scores.shape
    n_tgt = targets.shape[1]
    device = scores.device
    targets = targets.to(device=device, dtype=torch.long)
    valid = targets >= 0  # [B, T]
    target_scores = scores.gather(1, targets.clamp(min=0))  # [B, T]
    broken = valid & ~torch.isfinite(target_scores)  # [B, T]: non-finite targets rank last

    # Counts over all candidates include the targets themselves; subtract each distinct target column once,
    # compared exactly as the big pass compares (a NaN target column is "not below" any target).
    position = torch.arange(n_tgt, device=device)
    earlier = position.unsqueeze(0) < position.unsqueeze(1)  # [T(t), T(j)]: j < t
    repeated = ((targets.unsqueeze(2) == targets.unsqueeze(1)) & earlier).any(2)  # [B, T]
    distinct = valid & ~repeated  # [B, T]: first occurrence of each real target column
    s_j = target_scores.unsqueeze(1)  # [B, 1, T]
    s_t = target_scores.unsqueeze(2)  # [B, T, 1]
    tgt_gt = (~(s_j <= s_t) & distinct.unsqueeze(1)).sum(2)  # [B, T(t), T(j)] comparisons, small
    tgt_ge = (~(s_j < s_t) & distinct.unsqueeze(1)).sum(2)
    # Order among the targets themselves: a non-finite target is worse than every finite one.
    worst = target_scores.masked_fill(broken, float("-inf"))
    w_j, w_t = worst.unsqueeze(1), worst.unsqueeze(2)
    tgt_before = (((w_j > w_t) | ((w_j == w_t) & earlier.unsqueeze(0))) & valid.unsqueeze(1)).sum(2)

    # The big passes: one comparison of every candidate per target column, in row chunks, written into a
    # float buffer laid out like ``scores`` (row- or item-major) so reading and reducing stay sequential.
    # Summing floats is much faster on CPU than casting a bool mask; float32 counts are exact below 2**24.
    if chunk_elems is None:
        chunk_elems = _CPU_CHUNK_ELEMS if device.type == "cpu" else _CHUNK_ELEMS
    row_step = max(1, min(n_rows, chunk_elems // max(n_items, 1)))
    count_dtype = torch.float32 if n_items < 2**24 else torch.float64
    needed = row_step * n_items
    if workspace is not None and workspace.numel() >= needed and workspace.dtype == count_dtype:
        flat = workspace.reshape(-1)[:needed]
    else:
        flat = torch.empty(needed, dtype=count_dtype, device=device)
    item_major = scores.stride(0) == 1 and n_rows > 1
    all_ge = torch.zeros(n_rows, n_tgt, dtype=count_dtype, device=device)
    all_gt = torch.zeros_like(all_ge) if count_ties else all_ge
    known_candidates = n_candidates is not None
    if known_candidates:
        n_candidates = n_candidates.to(device=device, dtype=torch.int32)
    else:
        n_candidates = torch.empty(n_rows, dtype=torch.int32, device=device)
    for r0 in range(0, n_rows, row_step):
        chunk = scores[r0 : r0 + row_step]
        b = chunk.shape[0]
        cmp = flat[: b * n_items].view(n_items, b).T if item_major else flat[: b * n_items].view(b, n_items)
        if not known_candidates:  # NaN scores are candidates too (NaN != -inf)
            n_candidates[r0 : r0 + b] = torch.ne(chunk, float("-inf"), out=cmp).sum(1).to(torch.int32)
        for t in range(n_tgt):
            col = target_scores[r0 : r0 + b, t : t + 1]  # [b, 1]
            # "not below" = I - #below: excluded -inf items are below any finite target, NaN is never below.
            all_ge[r0 : r0 + b, t] = torch.lt(chunk, col, out=cmp).sum(1)
            if count_ties:
                all_gt[r0 : r0 + b, t] = torch.le(chunk, col, out=cmp).sum(1)

    n_negatives = n_candidates.long() - distinct.sum(1)
    neg_ge = n_items - all_ge.to(torch.int64) - tgt_ge
    neg_above = n_items - all_gt.to(torch.int64) - tgt_gt if count_ties else neg_ge
    # A non-finite target: every negative is above it (its comparisons above are meaningless).
    every = n_negatives.unsqueeze(1).expand_as(neg_ge)
    neg_ge = torch.where(broken, every, neg_ge)
    neg_above = torch.where(broken, every, neg_above)
    zero = torch.zeros((), device=device)
    ranks = torch.where(valid, (1 + neg_ge + tgt_before).float(), torch.full((), math.inf, device=device))
    return RankedTargets(
        ranks=ranks,
        n_targets=valid.sum(1),
        n_negatives=n_negatives,
        neg_above=torch.where(valid, neg_above.float(), zero),
        neg_tied=torch.where(valid, (neg_ge - neg_above).float(), zero),
    )


class _RankingMetric(Metric):
    """Mean over rows of a per-row value; `total` and `count` are sum states (DDP-safe)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    short_name = ""
    uses_k = True

    def __init__(self, k: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if not self.uses_k:
            if k is not None:
                raise ValueError(f"{type(self).__name__} takes no k, got {k!r}")
        elif isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        self.k = k
        self.name = self.short_name if k is None else f"{self.short_name}@{k}"
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.rows: list[Tensor] | None = None  # a list: update also appends each row's value ([B], NaN: skipped)

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        """Return (values [B], keep [B] bool) for one batch."""
        raise NotImplementedError

    def update(self, ranked: RankedTargets) -> None:
        values, keep = self._per_row(ranked)
        self.total += torch.where(keep, values, torch.zeros_like(values)).sum().to(self.total.dtype)
        self.count += keep.sum().to(self.count.dtype)
        if self.rows is not None:
            self.rows.append(torch.where(keep, values, torch.full_like(values, float("nan"))).detach().cpu())

    def compute(self) -> Tensor:
        # count is a whole number, so clamping at 1 gives 0.0 when empty without a host sync.
        return self.total / self.count.clamp(min=1.0)

    def _hits(self, ranked: RankedTargets) -> Tensor:
        return ranked.ranks <= self.k  # [B, T]; padding ranks are +inf


def _all_rows(values: Tensor) -> tuple[Tensor, Tensor]:
    return values, torch.ones_like(values, dtype=torch.bool)


class HitRate(_RankingMetric):
    """HR@k: 1 if any target of the row is ranked within the top k, else 0."""

    short_name = "hr"

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        return _all_rows(self._hits(ranked).any(1).float())


class Recall(_RankingMetric):
    """Recall@k: #targets in the top k / #targets of the row."""

    short_name = "recall"

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        hits = self._hits(ranked).sum(1).float()
        return _all_rows(hits / ranked.n_targets.clamp(min=1).float())


class Precision(_RankingMetric):
    """Precision@k: #targets in the top k / k."""

    short_name = "precision"

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        return _all_rows(self._hits(ranked).sum(1).float() / self.k)


class NDCG(_RankingMetric):
    """NDCG@k with binary relevance: sum over hits of 1/log2(rank+1), over IDCG of min(n_targets, k) hits."""

    short_name = "ndcg"

    def __init__(self, k: int, **kwargs) -> None:
        super().__init__(k, **kwargs)
        # idcg[n] = sum_{i=1..n} 1/log2(i+1), n = 0..k
        discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
        idcg = torch.cat([torch.zeros(1, dtype=torch.float64), discounts.cumsum(0)])
        self.register_buffer("idcg", idcg.float(), persistent=False)

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        hits = self._hits(ranked)
        gains = torch.where(hits, 1.0 / torch.log2(ranked.ranks.clamp(max=self.k) + 1), 0.0)
        ideal = self.idcg.to(gains.device)[ranked.n_targets.clamp(min=1, max=self.k)]
        return _all_rows(gains.sum(1) / ideal)


class MRR(_RankingMetric):
    """MRR@k: 1/(best target rank) if it is within the top k, else 0."""

    short_name = "mrr"

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        best = ranked.ranks.min(1).values
        return _all_rows(torch.where(best <= self.k, 1.0 / best, torch.zeros_like(best)))


class AUC(_RankingMetric):
    """AUC: per target (n_neg - neg_above - 0.5 * neg_tied) / n_neg, averaged over the row's targets.

    Ties count half (Mann-Whitney). Rows without negatives are skipped.
    """

    short_name = "auc"
    uses_k = False

    def __init__(self, **kwargs) -> None:
        super().__init__(None, **kwargs)

    def _per_row(self, ranked: RankedTargets) -> tuple[Tensor, Tensor]:
        n_neg = ranked.n_negatives.float().unsqueeze(1)  # [B, 1]
        per_target = (n_neg - ranked.neg_above - 0.5 * ranked.neg_tied) / n_neg.clamp(min=1.0)
        real = torch.isfinite(ranked.ranks)
        row = torch.where(real, per_target, 0.0).sum(1) / ranked.n_targets.clamp(min=1).float()
        return row, ranked.n_negatives > 0


_BY_NAME: dict[str, type[_RankingMetric]] = {
    "hr": HitRate,
    "recall": Recall,
    "precision": Precision,
    "ndcg": NDCG,
    "mrr": MRR,
    "auc": AUC,
}


def ranking_metrics(
    ks: Sequence[int] = (10, 20),
    names: Sequence[str] = ("hr", "recall", "precision", "ndcg", "mrr", "auc"),
) -> dict[str, Metric]:
    """Build ``{"hr@10": HitRate(10), ..., "auc": AUC()}``; "auc" appears once, without a k."""
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown ranking metric(s) {unknown}; valid names are {sorted(_BY_NAME)}")
    out: dict[str, Metric] = {}
    for name in names:
        if name == "auc":
            metric: _RankingMetric = AUC()
            out[metric.name] = metric
            continue
        for k in ks:
            metric = _BY_NAME[name](k)
            out[metric.name] = metric
    return out
