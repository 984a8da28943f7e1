"""build_cross_domain: raw ids -> one shared user index and per-domain item indices."""

from __future__ import annotations

import numpy as np

from translearn.data.build import RawDomain, build_cross_domain, normalise_ids
from translearn.data.schema import MISSING


def test_int_ids_sort_numerically(make_data):
    data = make_data(d=dict(users=[10, 9, 100, 9], items=[3, 20, 3, 100]))
    assert data.user_ids.dtype == np.int64
    assert data.user_ids.tolist() == [9, 10, 100]  # numeric, not "10" < "100" < "9"
    assert data.domain("d").interactions.users.tolist() == [1, 0, 2, 0]
    assert data.domain("d").item_ids.tolist() == [3, 20, 100]
    assert data.domain("d").interactions.items.tolist() == [0, 1, 0, 2]


def test_integer_text_ids_become_int64_and_sort_numerically(make_data):
    data = make_data(d=dict(users=["10", " 9 ", "100"], items=["1", "2", "3"]))
    assert data.user_ids.dtype == np.int64
    assert data.user_ids.tolist() == [9, 10, 100]
    assert data.domain("d").interactions.users.tolist() == [1, 0, 2]


def test_mixed_ids_become_strings_in_every_domain(make_data):
    # one non-integer user id anywhere makes all user ids strings, so "1" in a and 1 in b stay the same user
    data = make_data(a=dict(users=[1, 10, 9], items=[0, 0, 0]), b=dict(users=["x", "1"], items=[0, 0]))
    assert data.user_ids.dtype.kind == "U"
    assert data.user_ids.tolist() == ["1", "10", "9", "x"]  # lexicographic once they are strings
    assert data.domain("a").interactions.users.tolist() == [0, 1, 2]
    assert data.domain("b").interactions.users.tolist() == [3, 0]
    assert data.overlapping_users("a", "b").tolist() == [0]


def test_missing_ids_map_to_missing(make_data):
    data = make_data(d=dict(users=["u1", None, float("nan"), "", "  ", "u2"],
                            items=["i1", "i2", None, "i1", "", float("nan")]))
    inter = data.domain("d").interactions
    assert data.user_ids.tolist() == ["u1", "u2"]
    assert inter.users.tolist() == [0, MISSING, MISSING, MISSING, MISSING, 1]
    assert data.domain("d").item_ids.tolist() == ["i1", "i2"]
    assert inter.items.tolist() == [0, 1, MISSING, 0, MISSING, MISSING]


def test_missing_float_ids_with_int_ids(make_data):
    # an int column with gaps arrives as float with NaN; the ids stay integers
    data = make_data(d=dict(users=[3.0, np.nan, 1.0], items=[7, 8, 7]))
    assert data.user_ids.dtype == np.int64 and data.user_ids.tolist() == [1, 3]
    assert data.domain("d").interactions.users.tolist() == [1, MISSING, 0]


def test_users_share_one_index_items_are_per_domain(make_data):
    data = make_data(a=dict(users=["bob", "amy", "cat"], items=["i1", "i2", "i1"]),
                     b=dict(users=["cat", "dan", "bob"], items=["i9", "i1", "i1"]))
    assert data.user_ids.tolist() == ["amy", "bob", "cat", "dan"]
    assert data.domain("a").interactions.users.tolist() == [1, 0, 2]
    assert data.domain("b").interactions.users.tolist() == [2, 3, 1]
    assert data.overlapping_users("a", "b").tolist() == [1, 2]
    # the same raw item id "i1" is a different item (own index space) in each domain
    assert data.domain("a").item_ids.tolist() == ["i1", "i2"]
    assert data.domain("b").item_ids.tolist() == ["i1", "i9"]
    assert data.domain("a").interactions.items.tolist() == [0, 1, 0]
    assert data.domain("b").interactions.items.tolist() == [1, 0, 0]


def test_catalog_items_without_interactions_keep_their_text(make_data):
    data = make_data(d=dict(users=["u", "u"], items=["b", "z"], catalog=["c", "a", "b"],
                            item_text=["C text", "A text", "B text"], item_attributes=["cc", "aa", "bb"]))
    dom = data.domain("d")
    assert dom.item_ids.tolist() == ["a", "b", "c", "z"]
    assert dom.item_text.tolist() == ["A text", "B text", "C text", ""]  # "z" has no catalogue entry
    assert dom.item_attributes.tolist() == ["aa", "bb", "cc", ""]
    assert dom.interactions.items.tolist() == [1, 3]


def test_ratings_and_order_dtypes_and_absence(make_data):
    data = make_data(a=dict(users=[1], items=[1], ratings=[4], order=[7]), b=dict(users=[1], items=[1]))
    a, b = data.domain("a").interactions, data.domain("b").interactions
    assert a.ratings.dtype == np.float32 and a.ratings.tolist() == [4.0]
    assert a.order.dtype == np.float64 and a.order.tolist() == [7.0]
    assert b.ratings is None and b.order is None
    assert data.domain("b").item_text is None


def test_large_integer_ids_stay_distinct():
    # above 2**53 a float64 round trip merges neighbours; ids must be parsed exactly
    big = [1234567890123456789, 1234567890123456788]
    for users in (np.array([str(v) for v in big], dtype=object), np.array(big, dtype=object)):
        data = build_cross_domain({"d": RawDomain(users=users, items=np.array([1, 2]))})
        assert data.user_ids.tolist() == sorted(big)
        assert data.domain("d").interactions.users.tolist() == [1, 0]


def test_distinct_text_ids_never_merge(make_data):
    # "007" and "7" are two raw ids; reading them as the integer 7 would merge two users and lose "007"
    data = make_data(d=dict(users=["007", "7", "1e1", "10"], items=[1, 1, 1, 1]))
    assert len(data.user_ids) == 4
    assert sorted(data.user_ids.tolist()) == ["007", "10", "1e1", "7"]


def test_float_ids_match_text_ids_when_mixed():
    # a float column with gaps (1.0, NaN) next to string ids: 1.0 is the same id as "1", not "1.0"
    values, missing = normalise_ids([np.array([1.0, np.nan, 2.0]), np.array(["1", "x"], dtype=object)])
    assert values[0].tolist() == ["1", "", "2"] and missing[0].tolist() == [False, True, False]
    assert values[1].tolist() == ["1", "x"]


def test_stats_counts(make_data):
    data = make_data(a=dict(users=["u1", "u2"], items=["i", "j"]), b=dict(users=["u2"], items=["k"], ratings=[3]))
    stats = data.stats()
    assert stats["users"] == 2
    assert stats["domains"]["a"] == {"users": 2, "items": 2, "interactions": 2, "density": 0.5,
                                     "has_ratings": False, "has_order": False, "has_text": False,
                                     "has_images": False}
    assert stats["domains"]["b"]["has_ratings"] is True
    assert stats["overlap"] == {"a&b": 1}
