"""The synthetic generator's ``sequential`` knob: signal in the order, and the default data unchanged."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from translearn.data.schema import CrossDomainData
from translearn.data.sources.synthetic import SyntheticSource

SMALL = dict(num_users=300, num_items=(120, 80), seed=3)


def _digest(data: CrossDomainData) -> str:
    h = hashlib.sha256(data.user_ids.tobytes())
    for dom in data.domains.values():
        i = dom.interactions
        for a in (i.users, i.items, i.ratings, i.order, dom.item_ids):
            h.update(a.tobytes())
        h.update("|".join(dom.item_text).encode())
    return h.hexdigest()


def test_default_data_and_fingerprint_are_those_of_before_the_knob() -> None:
    # values recorded with the generator before `sequential` existed
    assert SyntheticSource().fingerprint() == "cfded4d6e97a9a7b5de22c42d1dc1147efdfcdc8e321c7593d19fce8da13d83d"
    small = SyntheticSource(num_users=200, num_items=(50, 40), seed=3)
    assert small.fingerprint() == "43b91c269feb222a468781fe6a6d99daac0a957d213df2a91da2f43927b3bfbe"
    assert _digest(small.load()) == "7c46ba28dced58ed629659488f6ac34d6c90aa6c3de6767660288e3b8868035f"
    assert SyntheticSource(sequential=0.5).fingerprint() != SyntheticSource().fingerprint()
    with pytest.raises(ValueError, match="sequential"):
        SyntheticSource(sequential=1.5)


def _oracle_hr10(source: SyntheticSource) -> float:
    """HR@10 of ranking every target item by clockwise ring distance from the user's previous item (any domain),
    over the target rows that have a previous row."""
    data, ring = source.load(), source.item_ring()
    names = data.domain_names
    inter = [data.domain(n).interactions for n in names]
    users = np.concatenate([x.users for x in inter])
    order = np.concatenate([x.order for x in inter])
    theta = np.concatenate([ring[n][x.items] for n, x in zip(names, inter, strict=True)])
    is_target = np.concatenate([np.full(len(x), n == "target") for n, x in zip(names, inter, strict=True)])
    perm = np.lexsort((order, users))
    users, theta, is_target = users[perm], theta[perm], is_target[perm]
    pairs = np.flatnonzero((users[1:] == users[:-1]) & is_target[1:]) + 1  # target rows after a row of the user
    dist = np.mod(ring["target"][None, :] - theta[pairs - 1, None], 1.0)  # [P, I]
    true = np.mod(theta[pairs] - theta[pairs - 1], 1.0)
    rank = (dist < true[:, None]).sum(1)
    return float((rank < 10).mean())


def test_sequential_order_makes_the_next_item_predictable_across_domains() -> None:
    plain, walk = SyntheticSource(**SMALL), SyntheticSource(**SMALL, sequential=0.9)
    a, b = plain.load(), walk.load()
    for name in a.domain_names:  # the same rows; only the order key differs
        x, y = a.domain(name).interactions, b.domain(name).interactions
        assert np.array_equal(x.users, y.users) and np.array_equal(x.items, y.items)
        assert np.array_equal(x.ratings, y.ratings) and not np.array_equal(x.order, y.order)
    hr_plain, hr_walk = _oracle_hr10(plain), _oracle_hr10(walk)
    assert hr_plain < 0.25  # random order: about 10 / 80
    assert hr_walk > 3 * hr_plain and hr_walk > 0.6
    # each user's rows of all domains form one walk: order keys 0..M-1 without ties
    inter = [b.domain(n).interactions for n in b.domain_names]
    users = np.concatenate([x.users for x in inter])
    order = np.concatenate([x.order for x in inter])
    u = users[0]
    assert sorted(order[users == u].tolist()) == list(range(int((users == u).sum())))
