"""Tests for translearn.metrics: rank_targets, ranking metrics and rating metrics (values derived by hand)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from translearn.metrics import (
    AUC,
    MAE,
    MRR,
    NDCG,
    RMSE,
    HitRate,
    Precision,
    Recall,
    rank_targets,
    ranking_metrics,
    rating_metrics,
)

INF = float("inf")


def _value(metric, ranked) -> float:
    metric.update(ranked)
    return float(metric.compute())


# --- rank_targets -------------------------------------------------------------------------------------------


def test_rank_targets_hand_example() -> None:
    scores = torch.tensor(
        [
            # row 0: col 1 excluded; targets col 2 (2.0, tied with negatives 3 and 5) and col 4 (1.0)
            [3.0, -INF, 2.0, 2.0, 1.0, 2.0],
            # row 1: col 3 excluded; targets cols 1, 0, 5 all score 0.5 (tied with each other)
            [0.5, 0.5, 0.9, -INF, 0.1, 0.5],
        ]
    )
    targets = torch.tensor([[2, 4, -1], [1, 0, 5]])
    r = rank_targets(scores, targets)
    # row 0: negatives = cols 0, 3, 5 (3.0, 2.0, 2.0).
    #   col 2 (2.0): negatives >= 2 -> 3 (1 above, 2 tied) -> rank 4
    #   col 4 (1.0): negatives >= 1 -> 3 (all above) + target col 2 above -> rank 5
    # row 1: negatives = cols 2, 4 (0.9, 0.1); each target has 1 negative above;
    #   tied targets are ordered by position in `targets`: ranks 2, 3, 4
    assert r.ranks.tolist() == [[4.0, 5.0, INF], [2.0, 3.0, 4.0]]
    assert r.n_targets.tolist() == [2, 3]
    assert r.n_negatives.tolist() == [3, 2]
    assert r.neg_above.tolist() == [[1.0, 3.0, 0.0], [1.0, 1.0, 1.0]]
    assert r.neg_tied.tolist() == [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert r.ranks.dtype == torch.float32 and r.n_targets.dtype == torch.long


def test_rank_targets_chunking_matches_unchunked() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (7, 40), generator=gen).float()
    targets = torch.stack([torch.randperm(40, generator=gen)[:4] for _ in range(7)])
    targets[::2, -1] = -1
    full = rank_targets(scores, targets)
    for chunk in (1, 50, 100, 200):
        part = rank_targets(scores, targets, chunk_elems=chunk)
        for a, b in zip(full, part, strict=True):
            assert torch.equal(a, b)


NAN = float("nan")


@pytest.mark.parametrize("count_ties", [True, False])
@pytest.mark.parametrize("give_candidates", [True, False])
def test_non_finite_scores_rank_pessimistically(count_ties: bool, give_candidates: bool) -> None:
    scores = torch.tensor([
        # row 0: targets col 2 (0.2) and col 0 (0.5); negatives col 1 (NaN, counts above), 4 (0.9), 5 (0.1)
        [0.5, NAN, 0.2, -INF, 0.9, 0.1],
        # row 1: target col 0 is NaN (ranks last), target col 2 (0.3) ties negative col 1, below col 3 (0.7)
        [NAN, 0.3, 0.3, 0.7, -INF, 0.1],
        # row 2: a fully diverged row, one target among 5 NaN negatives
        [NAN, NAN, NAN, NAN, NAN, NAN],
        # row 3: a +inf target is last, not first
        [INF, 0.0, 1.0, 2.0, 3.0, 4.0],
    ])
    targets = torch.tensor([[2, 0], [0, 2], [1, -1], [0, -1]])
    n_cand = torch.tensor([5, 5, 6, 6]) if give_candidates else None
    r = rank_targets(scores, targets, n_candidates=n_cand, count_ties=count_ties)
    # row 0: col 2 has NaN, 0.9 and the target 0.5 above it -> 4; col 0 has NaN and 0.9 above -> 3
    # row 1: col 2 has 0.3 (tie) and 0.7 -> 3; the NaN target is below all 3 negatives and col 2 -> 5
    # row 2: below all 5 negatives -> 6; row 3: below all 5 negatives -> 6
    assert r.ranks.tolist() == [[4.0, 3.0], [5.0, 3.0], [6.0, INF], [6.0, INF]]
    assert r.n_negatives.tolist() == [3, 3, 5, 5]
    tied = [[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]] if count_ties else [[0.0] * 2] * 4
    above = [[2.0, 2.0], [3.0, 2.0 - tied[1][1]], [5.0, 0.0], [5.0, 0.0]]
    assert r.neg_above.tolist() == above and r.neg_tied.tolist() == tied
    assert _value(HitRate(1), r) == 0.0  # no row is a perfect hit, though every score compares False
    # AUC per target (n_neg - above - ties / 2) / n_neg: row 0 (1/3 + 1/3) / 2; row 1 (0 + x) / 2 with x = 1.5/3
    # (the tie counts half) or 1/3 (ties reported as above); rows 2 and 3 score 0.
    row1 = (0.0 + (1.5 / 3 if count_ties else 1 / 3)) / 2
    assert _value(AUC(), r) == pytest.approx((1 / 3 + row1) / 4)


def test_rank_targets_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        rank_targets(torch.zeros(3), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError):
        rank_targets(torch.zeros(2, 5), torch.zeros(3, 1, dtype=torch.long))


# --- ranking metrics on a hand-worked example ---------------------------------------------------------------

# A: several held-out items, ranks 1 and 3 (4 negatives: cols 1, 3, 4, 5; col 1 scores above col 2).
# B: target tied with one negative (col 2), excluded col 3 -> rank 2 (4 negatives, 0 above, 1 tied).
# C: miss, rank 6 (5 negatives, all above).
HAND_SCORES = torch.tensor(
    [
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
        [1.0, 2.0, 2.0, -INF, 0.0, 0.0],
        [9.0, 8.0, 7.0, 6.0, 5.0, 1.0],
    ]
)
HAND_TARGETS = torch.tensor([[0, 2], [1, -1], [5, -1]])
L2 = math.log2


def test_hand_example_ranks() -> None:
    r = rank_targets(HAND_SCORES, HAND_TARGETS)
    assert r.ranks.tolist() == [[1.0, 3.0], [2.0, INF], [6.0, INF]]
    assert r.n_negatives.tolist() == [4, 4, 5]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (HitRate(3), (1 + 1 + 0) / 3),
        (HitRate(1), (1 + 0 + 0) / 3),
        (Recall(3), (2 / 2 + 1 / 1 + 0) / 3),
        (Recall(2), (1 / 2 + 1 / 1 + 0) / 3),
        (Precision(3), (2 / 3 + 1 / 3 + 0) / 3),
        (Precision(1), (1 / 1 + 0 + 0) / 3),
        # A: (1/log2(2) + 1/log2(4)) / (1/log2(2) + 1/log2(3)); B: (1/log2(3)) / (1/log2(2)); C: 0
        (NDCG(3), ((1 / L2(2) + 1 / L2(4)) / (1 / L2(2) + 1 / L2(3)) + (1 / L2(3)) / 1 + 0) / 3),
        # k=2: A's rank-3 target is cut but IDCG still uses min(2, 2) = 2 slots
        (NDCG(2), ((1 / L2(2)) / (1 / L2(2) + 1 / L2(3)) + (1 / L2(3)) / 1 + 0) / 3),
        (MRR(3), (1 / 1 + 1 / 2 + 0) / 3),
        (MRR(1), (1 + 0 + 0) / 3),
        # A: mean((4-0)/4, (4-1)/4) = 0.875; B: (4 - 0 - 0.5*1)/4 = 0.875; C: (5-5)/5 = 0
        (AUC(), (0.875 + 0.875 + 0.0) / 3),
    ],
    ids=lambda x: getattr(x, "name", ""),
)
def test_metric_hand_values(metric, expected: float) -> None:
    assert _value(metric, rank_targets(HAND_SCORES, HAND_TARGETS)) == pytest.approx(expected, abs=1e-6)


def test_auc_skips_rows_without_negatives() -> None:
    scores = torch.cat([HAND_SCORES, torch.tensor([[1.0, -INF, -INF, -INF, -INF, -INF]])])
    targets = torch.cat([HAND_TARGETS, torch.tensor([[0, -1]])])
    ranked = rank_targets(scores, targets)
    assert ranked.n_negatives.tolist()[-1] == 0
    assert _value(AUC(), ranked) == pytest.approx((0.875 + 0.875 + 0.0) / 3)  # row D not counted
    assert _value(HitRate(3), ranked) == pytest.approx(3 / 4)  # but it counts for HR (rank 1)


def test_constant_scorer_is_pessimistic() -> None:
    scores = torch.zeros(4, 20)
    targets = torch.tensor([[0, 1], [5, -1], [19, 3], [7, -1]])
    ranked = rank_targets(scores, targets)
    # one target: 1 + 19 tied candidates = 20; two targets: 1 + 18 negatives (+ 1 earlier target) = 19, 20
    assert ranked.ranks.tolist() == [[19.0, 20.0], [20.0, INF], [19.0, 20.0], [20.0, INF]]
    for metric in (HitRate(10), Recall(10), NDCG(10), MRR(10), Precision(10)):
        assert _value(metric, ranked) == 0.0
    assert _value(AUC(), ranked) == pytest.approx(0.5)  # ties count half


@pytest.mark.filterwarnings("ignore:.*called before the ``update``")
def test_empty_metric_computes_zero() -> None:
    assert float(HitRate(5).compute()) == 0.0
    assert float(AUC().compute()) == 0.0


# --- builders and names -------------------------------------------------------------------------------------


def test_ranking_metrics_builder() -> None:
    metrics = ranking_metrics(ks=(10, 20))
    expected = {f"{n}@{k}" for n in ("hr", "recall", "precision", "ndcg", "mrr") for k in (10, 20)} | {"auc"}
    assert set(metrics) == expected
    assert all(m.name == key for key, m in metrics.items())
    assert isinstance(metrics["ndcg@20"], NDCG) and metrics["ndcg@20"].k == 20
    assert set(ranking_metrics(ks=(5,), names=("hr", "auc"))) == {"hr@5", "auc"}
    with pytest.raises(ValueError, match="valid names"):
        ranking_metrics(names=("hr", "map"))
    with pytest.raises(ValueError):
        HitRate(0)


def test_rating_metrics() -> None:
    metrics = rating_metrics()
    assert set(metrics) == {"mae", "rmse"} and metrics["mae"].name == "mae" and metrics["rmse"].name == "rmse"
    assert isinstance(metrics["mae"], MAE) and isinstance(metrics["rmse"], RMSE)
    preds, target = torch.tensor([3.0, 4.0, 1.0]), torch.tensor([4.0, 4.0, 3.0])
    # errors -1, 0, -2: MAE = 3/3 = 1, RMSE = sqrt(5/3)
    metrics["mae"].update(preds, target)
    metrics["rmse"].update(preds, target)
    assert float(metrics["mae"].compute()) == pytest.approx(1.0)
    assert float(metrics["rmse"].compute()) == pytest.approx(math.sqrt(5 / 3))
    # second batch (error 4): MAE = (1 + 0 + 2 + 4)/4 = 7/4, RMSE = sqrt((1 + 0 + 4 + 16)/4)
    metrics["mae"].update(torch.tensor([5.0]), torch.tensor([1.0]))
    metrics["rmse"].update(torch.tensor([5.0]), torch.tensor([1.0]))
    assert float(metrics["mae"].compute()) == pytest.approx(7 / 4)
    assert float(metrics["rmse"].compute()) == pytest.approx(math.sqrt(21 / 4))
    with pytest.raises(ValueError):
        MAE().update(torch.zeros(2), torch.zeros(3))


# --- sum states: batching and merging (what DDP reduction does) ---------------------------------------------


def _all_metrics():
    return [HitRate(3), Recall(3), Precision(3), NDCG(3), MRR(3), AUC()]


def test_sum_states_batching_and_merge() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (10, 12), generator=gen).float()
    scores[:, :2] = -INF
    targets = torch.stack([2 + torch.randperm(10, generator=gen)[:3] for _ in range(10)])
    targets[::3, 1:] = -1
    scores[9, 2:] = -INF  # last row: only its targets are candidates (no negatives)
    scores[9, targets[9, 0]] = 1.0
    whole = rank_targets(scores, targets)
    part_a, part_b = rank_targets(scores[:4], targets[:4]), rank_targets(scores[4:], targets[4:])
    metric_sets = (_all_metrics(), _all_metrics(), _all_metrics(), _all_metrics())
    for seq, merged_a, merged_b, ref in zip(*metric_sets, strict=True):
        seq.update(part_a)
        seq.update(part_b)
        merged_a.update(part_a)
        merged_b.update(part_b)
        merged_a.merge_state(merged_b)
        expected = _value(ref, whole)
        assert float(seq.compute()) == pytest.approx(expected, abs=1e-6)
        assert float(merged_a.compute()) == pytest.approx(expected, abs=1e-6)
    for seq, ref in zip(rating_metrics().values(), rating_metrics().values(), strict=True):
        other = type(seq)()
        seq.update(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0]))
        other.update(torch.tensor([5.0]), torch.tensor([3.0]))
        seq.merge_state(other)
        ref.update(torch.tensor([1.0, 2.0, 5.0]), torch.tensor([2.0, 2.0, 3.0]))
        assert float(seq.compute()) == pytest.approx(float(ref.compute()))


# --- brute-force reference on random matrices with ties ----------------------------------------------------


def _reference(scores: list[list[float]], targets: list[list[int]], k: int) -> dict[str, float]:
    """Pure-Python ranks by the documented tie rule, then every metric averaged over rows."""
    sums = {"hr": 0.0, "recall": 0.0, "precision": 0.0, "ndcg": 0.0, "mrr": 0.0, "auc": 0.0}
    auc_rows = 0
    for row, tgts in zip(scores, targets, strict=True):
        real = [t for t in tgts if t >= 0]
        negs = [s for i, s in enumerate(row) if s != -INF and i not in real]
        ranks, aucs = [], []
        for pos, t in enumerate(real):
            s = row[t]
            rank = 1 + sum(n >= s for n in negs)
            rank += sum(row[o] > s or (row[o] == s and p < pos) for p, o in enumerate(real) if p != pos)
            ranks.append(rank)
            if negs:
                aucs.append(sum(1.0 if n < s else 0.5 if n == s else 0.0 for n in negs) / len(negs))
        hits = [r for r in ranks if r <= k]
        sums["hr"] += 1.0 if hits else 0.0
        sums["recall"] += len(hits) / len(real)
        sums["precision"] += len(hits) / k
        idcg = sum(1 / math.log2(i + 1) for i in range(1, min(len(real), k) + 1))
        sums["ndcg"] += sum(1 / math.log2(r + 1) for r in hits) / idcg
        sums["mrr"] += 1 / min(ranks) if min(ranks) <= k else 0.0
        if negs:
            sums["auc"] += sum(aucs) / len(aucs)
            auc_rows += 1
    out = {name: total / len(scores) for name, total in sums.items()}
    out["auc"] = sums["auc"] / auc_rows if auc_rows else 0.0
    return out


def test_against_brute_force_reference() -> None:
    rng = random.Random(7)
    for trial in range(50):
        n_rows, n_items = rng.randint(1, 6), rng.randint(3, 25)
        n_tgt, k = rng.randint(1, 4), rng.randint(1, 6)
        scores, targets = [], []
        for _ in range(n_rows):
            row = [float(rng.randint(0, 4)) for _ in range(n_items)]  # few levels -> many ties
            real = rng.sample(range(n_items), rng.randint(1, min(n_tgt, n_items)))
            for i in range(n_items):
                if i not in real and rng.random() < 0.3:
                    row[i] = -INF
            scores.append(row)
            targets.append(real + [-1] * (n_tgt - len(real)))
        chunk = rng.choice([None, 1, 30])
        ranked = rank_targets(torch.tensor(scores), torch.tensor(targets), chunk_elems=chunk)
        expected = _reference(scores, targets, k)
        for name, metric in ranking_metrics(ks=(k,)).items():
            got = _value(metric, ranked)
            assert got == pytest.approx(expected[name.split("@")[0]], abs=1e-5), (trial, name)


def test_rank_targets_without_tie_counts_keeps_ranks_and_reports_ties_as_above():
    # scores row: targets at columns 0 (score 2.0) and 3 (score 1.0); negatives 2.0 (tie), 3.0, 0.5.
    scores = torch.tensor([[2.0, 2.0, 3.0, 1.0, 0.5]])
    targets = torch.tensor([[0, 3]])
    full = rank_targets(scores, targets)
    fast = rank_targets(scores, targets, count_ties=False)
    assert torch.equal(full.ranks, fast.ranks)
    # target 0: negatives >= 2.0 are {2.0, 3.0} -> rank 3; target 3: negatives >= 1.0 {2.0, 3.0},
    # plus the other target above it -> rank 4.
    assert fast.ranks.tolist() == [[3.0, 4.0]]
    assert full.neg_above.tolist() == [[1.0, 2.0]] and full.neg_tied.tolist() == [[1.0, 0.0]]
    assert fast.neg_above.tolist() == [[2.0, 2.0]] and fast.neg_tied.tolist() == [[0.0, 0.0]]


def test_rank_targets_uses_given_candidate_count_and_workspace():
    scores = torch.tensor([[0.1, float("-inf"), 0.9, 0.5]])
    targets = torch.tensor([[3]])
    workspace = torch.full((64,), 7.0)
    ranked = rank_targets(scores, targets, n_candidates=torch.tensor([3]), workspace=workspace)
    assert ranked.ranks.tolist() == [[2.0]]  # only 0.9 is above 0.5
    assert ranked.n_negatives.tolist() == [2]  # 3 candidates minus the target


def test_rank_targets_reads_item_major_scores_like_row_major():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 6, (7, 30), generator=gen).float()  # many ties
    scores[torch.rand(7, 30, generator=gen) < 0.2] = float("-inf")
    targets = torch.tensor([[0, 5, -1]] * 7)
    scores[:, [0, 5]] = torch.randint(0, 6, (7, 2), generator=gen).float()
    item_major = scores.T.contiguous().T  # same values, strides (1, 7)
    assert item_major.stride(0) == 1
    a, b = rank_targets(scores, targets), rank_targets(item_major, targets, chunk_elems=60)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
