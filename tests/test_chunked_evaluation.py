"""Full ranking over item chunks (``evaluation.max_scores``): every metric equals ranking the whole score
matrix, with ties, known items, repeats, several held-out items per user and non-finite scores."""

from __future__ import annotations

import json

import pytest
import torch

from translearn.errors import DivergedError
from translearn.models import matrix_factorization
from translearn.strategies import TargetOnly
from translearn.strategies.popularity import Popularity

METRICS = ("hr", "ndcg", "mrr", "recall", "precision", "auc")
USERS, ITEMS = 6, 23


def _model() -> torch.nn.Module:
    """MF with whole-number vectors over a few values: many items score exactly alike (ties)."""
    g = torch.Generator().manual_seed(3)
    model = matrix_factorization(USERS, {"t": ITEMS}, embedding_dim=2)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.randint(-2, 3, (USERS, 2), generator=g).float())
        model.item_encoders["t"].weight.copy_(torch.randint(-1, 2, (ITEMS, 2), generator=g).float())
    return model


def _batch() -> dict[str, torch.Tensor]:
    """Six users, one to three held-out items (padded with -1), known items that include some held-out ones."""
    targets = torch.tensor([[0, 5, 9], [3, -1, -1], [7, 8, -1], [22, 0, 11], [4, 4, -1], [15, 16, 17]])
    known = {0: [1, 2, 5, 20], 1: [3, 4], 2: [], 3: [0, 1, 2, 12, 13, 21, 22], 4: [10], 5: [16, 18]}
    rows = torch.tensor([u for u, items in known.items() for _ in items])
    cols = torch.tensor([i for items in known.values() for i in items])
    n_candidates = []
    for u in range(USERS):
        held = set(targets[u][targets[u] >= 0].tolist())
        n_candidates.append(ITEMS - len(set(known[u]) - held))
    return {"users": torch.arange(USERS), "targets": targets, "exclude_rows": rows, "exclude_cols": cols,
            "n_candidates": torch.tensor(n_candidates)}


def _evaluate(strategy, max_scores: int | None) -> dict[str, float]:
    strategy.evaluator.max_scores = max_scores
    strategy.evaluate_batch({k: v.clone() for k, v in _batch().items()}, "test")
    got = {name: m.compute().item() for name, m in strategy.evaluator.metrics("test").items()}
    scratch = strategy.evaluator._scratch["scores"].numel()
    if max_scores is not None:
        assert scratch <= max(max_scores, USERS), (scratch, max_scores)  # the bound held
    for m in strategy.evaluator.metrics("test").values():
        m.reset()
    strategy.evaluator._scratch.clear()
    return got


@pytest.mark.parametrize("repeats", ["mask", "keep"])
def test_item_chunks_give_every_metric_of_the_whole_matrix(repeats):
    strategy = TargetOnly(_model(), "t", ks=(1, 3, 5, 10), metrics=METRICS, repeats=repeats)
    whole = _evaluate(strategy, None)
    assert strategy.evaluator.max_scores is None and 0.0 < whole["ndcg@10"] < 1.0 and 0.0 < whole["auc"] < 1.0
    for bound in (1, USERS, 2 * USERS, 5 * USERS, USERS * ITEMS - 1):  # one item per chunk ... all but one
        assert _evaluate(strategy, bound) == whole, bound
    assert _evaluate(strategy, USERS * ITEMS) == whole  # at the bound: the whole matrix (fast path)


def test_float_scores_tie_across_chunks_as_in_the_whole_matrix():
    """Random 8-d vectors, each shared by several items: their scores tie only if every chunk computes them
    bit for bit as the whole matrix does, the held-out items' own scores included."""
    g = torch.Generator().manual_seed(5)
    model = matrix_factorization(USERS, {"t": ITEMS}, embedding_dim=8)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.randn(USERS, 8, generator=g))
        model.item_encoders["t"].weight.copy_(torch.randn(5, 8, generator=g)[torch.arange(ITEMS) % 5])
    strategy = TargetOnly(model, "t", ks=(3, 10), metrics=METRICS)
    whole = _evaluate(strategy, None)
    assert 0.0 < whole["auc"] < 1.0
    for bound in (USERS, 4 * USERS, 7 * USERS):
        assert _evaluate(strategy, bound) == whole, bound


def test_the_two_repeats_rules_still_differ_under_chunks():
    mask = _evaluate(TargetOnly(_model(), "t", ks=(10,), metrics=METRICS, repeats="mask"), 4)
    keep = _evaluate(TargetOnly(_model(), "t", ks=(10,), metrics=METRICS, repeats="keep"), 4)
    assert mask["auc"] < keep["auc"]  # a known held-out item ranks last under mask, by its score under keep


def test_popularity_ranks_over_item_chunks_alike(hand_facts):
    counts = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6]  # ties among counts
    strategy = Popularity(_model(), "t", ks=(1, 5), metrics=METRICS,
                          facts=hand_facts(USERS, ITEMS, sources=(), counts=counts))
    whole = _evaluate(strategy, None)
    assert _evaluate(strategy, 7) == whole and whole["hr@5"] > 0.0


def test_non_finite_scores_are_refused_with_the_same_line():
    messages = []
    for bound in (None, 5):
        model = _model()
        with torch.no_grad():
            model.item_encoders["t"].weight[6, 0] = float("nan")
            model.item_encoders["t"].weight[19, 1] = float("inf")
        strategy = TargetOnly(model, "t", ks=(5,), metrics=METRICS)
        strategy.evaluator.max_scores = bound
        with pytest.raises(DivergedError) as err:
            strategy.evaluate_batch(_batch(), "test")
        messages.append(str(err.value))
        assert all(m.update_count == 0 for m in strategy.evaluator.metrics("test").values())  # nothing ranked
    assert messages[0] == messages[1] and "non-finite scores to 6 of 6 users" in messages[0]


def test_a_bound_below_one_is_refused():
    with pytest.raises(ValueError, match="evaluation.max_scores must be a whole number >= 1 or null"):
        TargetOnly(_model(), "t").evaluator.__class__("t", max_scores=0)


def test_translearn_eval_with_a_tiny_bound_reproduces_the_run(trained_run, tmp_path, run_cli):
    run_dir, _ = trained_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    out = tmp_path / "chunked.json"
    done = run_cli("translearn-eval", [str(run_dir), "evaluation.max_scores=7", "--out", str(out)])
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads(out.read_text())
    keys = [k for k in saved if k.startswith(("val/target/", "test/target/"))]
    assert len(keys) > 8
    for key in keys:
        assert again[key] == pytest.approx(saved[key], abs=1e-6), key
    bad = run_cli("translearn-eval", [str(run_dir), "evaluation.max_scores=0"])
    assert bad.returncode == 2 and "config key 'evaluation.max_scores' must be a whole number >= 1" in bad.stderr
