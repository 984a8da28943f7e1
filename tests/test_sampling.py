"""NegativeSampler: uniform items outside each user's positives."""

from __future__ import annotations

import numpy as np

from translearn.data.sampling import NegativeSampler


def dense_sampler() -> NegativeSampler:
    """10 items. User 0 has every item but 2 and 5; user 1 has none; user 2 has item 9 only."""
    pos0 = [0, 1, 3, 4, 6, 7, 8, 9]
    return NegativeSampler(np.array([0] * 8 + [2]), np.array(pos0 + [9]), num_items=10)


def test_dense_user_gets_only_its_two_negatives():
    # 8 of 10 items positive: a redraw collides with p = 0.8, so 20 blind rounds alone leave ~1% of slots positive
    neg = dense_sampler().sample(np.zeros(500, dtype=np.int64), 4, np.random.default_rng(0))
    assert neg.shape == (500, 4) and neg.dtype == np.int64
    assert set(np.unique(neg).tolist()) == {2, 5}


def test_user_without_positives_is_uniform():
    counts = np.bincount(dense_sampler().sample(np.array([1] * 2000), 5, np.random.default_rng(1)).ravel(),
                         minlength=10)
    assert len(counts) == 10
    assert counts.min() > 850 and counts.max() < 1150  # 10,000 draws, 1,000 expected per item (sd ~ 30)


def test_negatives_never_positive_mixed_users():
    rng = np.random.default_rng(2)
    users = rng.integers(0, 3, 300)
    neg = dense_sampler().sample(users, 6, rng)
    assert neg.shape == (300, 6)
    assert neg.min() >= 0 and neg.max() < 10
    assert set(np.unique(neg[users == 0]).tolist()) == {2, 5}
    assert not np.any(neg[users == 2] == 9)
    assert set(np.unique(neg[users == 1]).tolist()) == set(range(10))


def test_same_rng_seed_same_negatives():
    a = dense_sampler().sample(np.array([0, 1, 2, 1]), 3, np.random.default_rng(7))
    b = dense_sampler().sample(np.array([0, 1, 2, 1]), 3, np.random.default_rng(7))
    assert np.array_equal(a, b)
    assert dense_sampler().sample(np.zeros(0, dtype=np.int64), 3, np.random.default_rng(0)).shape == (0, 3)


def test_is_positive():
    s = dense_sampler()
    users = np.array([[0], [1], [2]])
    items = np.array([[2, 3, 9], [2, 3, 9], [2, 3, 9]])
    assert s.is_positive(users, items).tolist() == [[False, True, True], [False, False, False], [False, False, True]]
    # user 1 item 0 is key 10 = user 0's "item 10"; there is no such item, and it must not alias anything
    assert s.is_positive(np.array([1, 3, 2]), np.array([0, 9, 8])).tolist() == [False, False, False]
    empty = NegativeSampler(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 5)
    assert empty.is_positive(np.array([0, 1]), np.array([0, 4])).tolist() == [False, False]


def test_duplicate_positives_are_fine():
    s = NegativeSampler(np.array([0, 0, 0]), np.array([1, 1, 0]), num_items=3)
    assert s.keys.tolist() == [0, 1]
    assert set(s.sample(np.zeros(50, dtype=np.int64), 2, np.random.default_rng(0)).ravel().tolist()) == {2}


def test_exact_fallback_after_blind_rounds():
    # with no blind redraws at all, every collision goes to the exact per-user draw
    pos = np.array([0, 1, 3, 4, 6, 7, 8, 9])
    s = NegativeSampler(np.zeros(8, dtype=np.int64), pos, num_items=10, max_rounds=0)
    neg = s.sample(np.zeros(200, dtype=np.int64), 3, np.random.default_rng(0))
    assert set(np.unique(neg).tolist()) == {2, 5}
    # a user with every item has no negative to give: the sampler still returns items, without hanging
    full = NegativeSampler(np.zeros(3, dtype=np.int64), np.arange(3), num_items=3)
    assert full.sample(np.array([0, 0]), 2, np.random.default_rng(0)).shape == (2, 2)
