"""The synthetic generator at scale: bounded blocks, and the ``candidates`` pool for very large sets."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.data.sources.synthetic import SyntheticSource


def test_candidates_null_or_above_the_catalogue_is_the_exact_generator() -> None:
    exact = SyntheticSource(num_users=200, num_items=(50, 40), seed=3)
    assert SyntheticSource(num_users=200, num_items=(50, 40), seed=3, candidates=None).fingerprint() == \
        exact.fingerprint()
    wide = SyntheticSource(num_users=200, num_items=(50, 40), seed=3, candidates=50)  # >= every catalogue
    a, b = exact.load(), wide.load()
    for name in a.domain_names:
        x, y = a.domain(name).interactions, b.domain(name).interactions
        assert np.array_equal(x.users, y.users) and np.array_equal(x.items, y.items)
    assert wide.fingerprint() != exact.fingerprint()  # the key names the knob all the same
    with pytest.raises(ValueError, match="candidates"):
        SyntheticSource(candidates=0)


def test_a_pool_gives_distinct_items_per_user_within_the_pool_size() -> None:
    source = SyntheticSource(num_users=400, num_items=(3000, 2000), candidates=40, seed=1)
    data = source.load()
    for name in data.domain_names:
        inter = data.domain(name).interactions
        pairs = inter.users.astype(np.int64) * 10_000 + inter.items
        assert len(np.unique(pairs)) == len(pairs)  # never the same item twice for a user
        per_user = np.bincount(inter.users)
        active = per_user[per_user > 0]
        assert active.min() >= source.min_interactions and active.max() <= 40 // 2
        assert len(np.unique(inter.items)) > 0.5 * data.domain(name).num_items  # pools cover the catalogue


def test_a_pool_still_picks_by_taste() -> None:
    # nearly no noise: each user takes the best items of their pool, so the items taken rank near the top
    # of the whole catalogue by that user's affinity (3 best of 200 random items: around the top 1.5%)
    source = SyntheticSource(num_users=1, num_items=(5000,), domains=("d",), candidates=200, noise=1e-4,
                             popularity=0.0, min_interactions=3, interactions_per_user=(3.0,))
    rng = np.random.default_rng(0)
    taste, items = rng.standard_normal((300, 8)), rng.standard_normal((5000, 8))
    rows, chosen, _ = source._choose(taste, items, np.zeros(5000), np.full(300, 3), rng)
    affinity = taste @ items.T  # [300, 5000]
    quantile = (affinity[rows] < affinity[rows, chosen][:, None]).mean(1)  # share of the catalogue below each pick
    assert len(rows) == 900 and np.median(quantile) > 0.97
