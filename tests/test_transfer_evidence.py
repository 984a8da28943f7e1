"""Transfer helps where the synthetic data is built so that it must, and hurts (visibly) where it must not.

similar:    tastes identical across domains (similarity 1), a sparse target (4 interactions per user)
dissimilar: unrelated tastes (similarity 0) and a denser target (10 per user), where borrowing from the
            source can only get in the way
Each strategy runs end to end through the real entry point (compose + train) at seed 0 (slow tier).

The thresholds come from runs at several seeds (``seed`` and ``data.seed`` both 0, 1 or 2; validation NDCG@10,
measured 2026-12-08 with the settings below), not from one random-number order. Ratios to target-only at seeds
0 / 1 / 2 ("-": not run; seed 0 is the one the tests run):
- similar (target-only 0.104 / 0.117 / 0.101): joint 3.01x / 2.66x / 3.12x, finetune 3.82x / 3.21x / -,
  distill 2.47x / 2.57x / -, feature_reuse 2.94x / 2.50x / -, fusion 3.22x / 3.08x / 3.49x. Asserted: > 2.0x,
  about 20% below the lowest; a transfer that does nothing gives about 1.0x, one that half works fails too.
- dissimilar (target-only 0.258 / 0.241 / 0.264): joint 0.77x / 0.95x, finetune 0.53x / 0.69x, distill 0.79x /
  0.93x, feature_reuse 0.86x / 0.87x (seeds 0 / 1). Joint and distillation lose only 5-7% at seed 1, so the
  former bound (< 0.9x) held at seed 0 only. Asserted: no gain (< 1.0x), a loss of more than 10% for fine-tuning
  (< 0.9x), and a ratio on unrelated domains below half the ratio on similar ones (measured at most 0.36): what
  a strategy gains from a related source it must not gain from an unrelated one.
- fusion on dissimilar domains: the source scorer alone (w = 1) 0.71x / 0.79x the target model alone (w = 0);
  chosen weight 0.5 / 0.3 (seeds 0 / 1); on similar domains 1.0 at seeds 0, 1 and 2.
- mapping (cold start, similar_dense): 4.0x target-only at seed 1 (asserted > 2.0x, as at seed 0); mapped from
  unrelated tastes 0.51x mapped from similar ones at seed 1 (asserted < 0.7x, as at seed 0).
"""

from __future__ import annotations

import functools

import pytest

from translearn.cli.config import compose
from translearn.train import train

SETTINGS = {"similar": (1.0, 4.0), "dissimilar": (0.0, 10.0), "similar_dense": (1.0, 10.0)}


@functools.cache
def _val(strategy: str, setting: str, cache_dir: str, split: str = "leave_one_out") -> dict:
    similarity, target_per_user = SETTINGS[setting]
    overrides = [
        "data.dataset.num_users=600", "data.dataset.num_items=[200,150]", "data.dataset.overlap=1.0",
        f"data.dataset.interactions_per_user=[30.0,{target_per_user}]", f"data.dataset.similarity={similarity}",
        "model.embedding_dim=8", "model.init_std=0.1", "optimizer.lr=0.01", "data.batch_size=256",
        "data.eval_batch_size=256", "trainer.max_epochs=20", f"strategy={strategy}", "logger=none",
        "callbacks=none", f"paths.cache_dir={cache_dir}", "evaluation.metrics=[ndcg]", "evaluation.ks=[10]",
        f"data/split={split}", "data.split.holdout_fraction=0.5" if split == "cold_start" else "seed=0",
    ]
    out = f"{cache_dir}/runs/{strategy}-{setting}-{split}"
    return train(compose(overrides, output_dir=out))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("evidence"))


def _ratio(strategy: str, setting: str, cache: str) -> float:
    """Validation NDCG@10 of ``strategy`` over target-only's, on the same data."""
    got, base = (_val(s, setting, cache)["val/target/ndcg@10"] for s in (strategy, "target_only"))
    return got / base


@pytest.mark.parametrize("strategy", ["joint", "finetune", "distill", "feature_reuse", "fusion"])
def test_every_strategy_beats_target_only_on_similar_domains_with_a_sparse_target(strategy, cache):
    assert _ratio(strategy, "similar", cache) > 2.0, strategy  # measured 2.47x to 3.82x (module docstring)


# Measured on unrelated domains at seeds 0 and 1: 0.53x (finetune) to 0.95x (joint) (module docstring).
UNRELATED_BOUND = {"joint": 1.0, "finetune": 0.9, "distill": 1.0, "feature_reuse": 1.0}


@pytest.mark.parametrize("strategy", list(UNRELATED_BOUND))
def test_negative_transfer_is_visible_on_unrelated_domains(strategy, cache):
    unrelated, related = _ratio(strategy, "dissimilar", cache), _ratio(strategy, "similar", cache)
    assert unrelated < UNRELATED_BOUND[strategy], (strategy, unrelated)
    assert unrelated < 0.5 * related, (strategy, unrelated, related)


def test_fusion_reports_the_harmful_source_and_leans_on_the_target(cache):
    summary = _val("fusion", "dissimilar", cache)
    # w = 1 (source scorer alone) is logged and clearly worse than w = 0 (target model alone) ...
    assert summary["val/fusion/ndcg@10_w1"] < 0.9 * summary["val/fusion/ndcg@10_w0"]
    # ... so the weight chosen on validation gives the source at most an equal share (measured 0.5 and 0.3 at
    # seeds 0 and 1), and less than on similar domains (1.0 at seeds 1 and 2).
    assert summary["val/fusion/weight"] <= 0.5
    similar = _val("fusion", "similar", cache)
    assert similar["val/fusion/weight"] > summary["val/fusion/weight"]


def test_mapping_serves_cold_start_users_from_their_source_history(cache):
    # Half of the shared users have no target training data; their target items are the held-out targets.
    base = _val("target_only", "similar_dense", cache, "cold_start")["val/target/ndcg@10"]
    similar = _val("mapping", "similar_dense", cache, "cold_start")["val/target/ndcg@10"]
    unrelated = _val("mapping", "dissimilar", cache, "cold_start")["val/target/ndcg@10"]
    assert similar > 2.0 * base, (similar, base)
    # Same target density, unrelated tastes: the mapped vectors carry little beyond popularity.
    assert unrelated < 0.7 * similar, (unrelated, similar)
