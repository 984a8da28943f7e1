"""Splits of the target domain: roles worked out by hand on tiny data."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.data.prepare import prepare
from translearn.data.splits import (
    TEST,
    TRAIN,
    VALID,
    ColdStartUsers,
    LeaveOneOut,
    RatioSplit,
    SplitError,
    TemporalSplit,
    row_order,
)

T, V, X = TRAIN, VALID, TEST


def roles_by_user(users, roles):
    out = {}
    for u, r in zip(users.tolist(), roles.tolist(), strict=True):
        out.setdefault(u, []).append(r)
    return out


# ---------------------------------------------------------------- LeaveOneOut

@pytest.mark.parametrize("ties, user3", [
    ("file_order", [V, X, T]),  # items 5 (row 6) and 4 (row 7) tie at order 7: the later row (item 4) is test
    ("item", [X, V, T]),  # the higher item index (item 5) is test
])
def test_leave_one_out_by_order(make_data, ties, user3):
    data = make_data(t=dict(
        users=[0, 0, 0, 1, 2, 2, 3, 3, 3, 0],
        items=[3, 1, 2, 9, 4, 5, 5, 4, 0, 6],
        order=[30, 10, 20, 5, 2, 1, 7, 7, 1, 25],
    ))
    # user 0: items by order 1(10) 2(20) 6(25) 3(30) -> 3 test, 6 valid; user 1: one row -> train;
    # user 2: two rows -> 5 (order 1) train, 4 (order 2) test; user 3: 0 (order 1) train, then the tie
    roles = LeaveOneOut(ties=ties)(data, "t", [], seed=0)
    assert roles.dtype == np.int8
    assert roles.tolist() == [X, T, T, T, X, T, *user3[:2], T, V]


def test_leave_one_out_default_ties_keep_file_order(make_data):
    # three rows of one user at the same time, items listed 2, 0, 1: the last listed (item 1) is test,
    # the one before (item 0) valid, whatever the item indices
    data = make_data(t=dict(users=[0, 0, 0], items=[2, 0, 1], order=[5, 5, 5]))
    assert LeaveOneOut()(data, "t", [], seed=0).tolist() == [T, V, X]
    assert LeaveOneOut(ties="item")(data, "t", [], seed=0).tolist() == [X, T, V]


def test_row_order_is_the_one_order_definition(make_data):
    data = make_data(t=dict(users=[1, 0, 1, 0, 1], items=[3, 2, 1, 0, 4], order=[2, 9, 1, 9, 1]))
    inter = data.domain("t").interactions
    # user 0: rows 1 and 3 tie at 9; user 1: rows 2 and 4 tie at 1, then row 0 (order 2)
    assert row_order(inter).tolist() == [1, 3, 2, 4, 0]
    assert row_order(inter, "item").tolist() == [3, 1, 2, 4, 0]  # user 0: item 0 (row 3) before item 2
    # over all users: order 1 (rows 2, 4), 2 (row 0), 9 (rows 1, 3)
    assert row_order(inter, by_user=False).tolist() == [2, 4, 0, 1, 3]
    assert row_order(inter, "item", by_user=False).tolist() == [2, 4, 0, 3, 1]


@pytest.mark.parametrize("split", [LeaveOneOut, RatioSplit, TemporalSplit, ColdStartUsers])
def test_unknown_tie_rule_names_the_key(split):
    with pytest.raises(SplitError, match=r"data.split.ties must be one of file_order, item, got 'time'"):
        split(ties="time")


def test_leave_one_out_without_order_is_random_but_seeded(make_data):
    users = np.repeat(np.arange(30), 5)
    data = make_data(t=dict(users=users, items=np.tile(np.arange(5), 30)))
    a = LeaveOneOut()(data, "t", [], seed=1)
    assert np.array_equal(a, LeaveOneOut()(data, "t", [], seed=1))
    for rs in roles_by_user(users, a).values():
        assert sorted(rs) == [T, T, T, V, X]
    tests = np.tile(np.arange(5), 30)[a == X]
    assert len(set(tests.tolist())) > 1  # not always the same (last) item
    b = LeaveOneOut()(data, "t", [], seed=2)
    assert not np.array_equal(a, b)


# ---------------------------------------------------------------- RatioSplit

def test_ratio_split_counts_per_user(make_data):
    sizes = {0: 10, 1: 5, 2: 1, 3: 4, 4: 20}
    users = np.concatenate([[u] * n for u, n in sizes.items()])
    data = make_data(t=dict(users=users, items=np.arange(len(users))))
    roles = roles_by_user(users, RatioSplit(ratios=(0.5, 0.25, 0.25))(data, "t", [], seed=0))
    count = {u: (rs.count(T), rs.count(V), rs.count(X)) for u, rs in roles.items()}
    # floor(n * 0.25) valid and test each
    assert count == {0: (6, 2, 2), 1: (3, 1, 1), 2: (1, 0, 0), 3: (2, 1, 1), 4: (10, 5, 5)}
    roles = roles_by_user(users, RatioSplit(ratios=(0.8, 0.1, 0.1))(data, "t", [], seed=0))
    count = {u: (rs.count(T), rs.count(V), rs.count(X)) for u, rs in roles.items()}
    assert count == {0: (8, 1, 1), 1: (5, 0, 0), 2: (1, 0, 0), 3: (4, 0, 0), 4: (16, 2, 2)}


def test_ratio_split_float_products(make_data):
    # 90 * 0.7 is 62.99999999999999 in floating point; the test share must still be 63 rows
    data = make_data(t=dict(users=[0] * 90, items=np.arange(90)))
    roles = RatioSplit(ratios=(0.1, 0.2, 0.7))(data, "t", [], seed=0)
    assert (np.sum(roles == T), np.sum(roles == V), np.sum(roles == X)) == (9, 18, 63)


def test_ratio_split_keeps_a_training_row_per_user(make_data):
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 400)
    data = make_data(t=dict(users=users, items=np.arange(400)))
    roles = RatioSplit(ratios=(0.05, 0.5, 0.45))(data, "t", [], seed=0)
    for rs in roles_by_user(users, roles).values():
        assert rs.count(T) >= 1


def test_ratio_split_temporal_takes_the_latest(make_data):
    order = [5, 9, 1, 7, 3, 8, 2, 6, 4, 0]
    data = make_data(t=dict(users=[0] * 10, items=np.arange(10), order=order))
    roles = RatioSplit(ratios=(0.8, 0.1, 0.1), temporal=True)(data, "t", [], seed=0)
    assert roles.tolist() == [T, X, T, T, T, V, T, T, T, T]  # order 9 -> test, 8 -> valid


def test_ratio_split_random_is_seeded(make_data):
    data = make_data(t=dict(users=[0] * 20, items=np.arange(20), order=np.arange(20)))
    a = RatioSplit(ratios=(0.6, 0.2, 0.2))(data, "t", [], seed=3)
    assert np.array_equal(a, RatioSplit(ratios=(0.6, 0.2, 0.2))(data, "t", [], seed=3))
    assert a[-4:].tolist() != [V, V, X, X]  # not temporal: the order key is ignored (for this seed)
    assert not np.array_equal(a, RatioSplit(ratios=(0.6, 0.2, 0.2))(data, "t", [], seed=4))


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.9, 0.2, -0.1), (0.0, 0.5, 0.5), (0.5, 0.2, 0.2), (1, 0, 0, 0)])
def test_ratio_split_bad_ratios(tiny_data, ratios):
    with pytest.raises(SplitError, match=r"data\.split\.ratios"):
        RatioSplit(ratios=ratios)(tiny_data, "t", [], seed=0)


def test_ratio_split_temporal_needs_order(make_data):
    data = make_data(t=dict(users=[0, 0], items=[0, 1]))
    with pytest.raises(SplitError, match="order key"):
        RatioSplit(temporal=True)(data, "t", [], seed=0)


# ---------------------------------------------------------------- TemporalSplit

# (user, order): ranks equal the order key; every user has early rows
TEMPORAL = dict(users=["a", "a", "b", "b", "c", "c", "a", "b", "c", "a"], items=list(range(10)),
                order=[0, 9, 1, 8, 2, 7, 3, 4, 5, 6])


@pytest.mark.parametrize("valid, test, roles", [
    (0.2, 0.1, [T, X, T, V, T, V, T, T, T, T]),  # order 9 -> test; 7 and 8 -> valid (one cut for everybody)
    (0.1, 0.2, [T, X, T, X, T, V, T, T, T, T]),  # 8, 9 -> test; 7 -> valid (1 - 0.2 - 0.1 > 0.7 in floats)
    (0.0, 0.3, [T, X, T, X, T, X, T, T, T, T]),
])
def test_temporal_split_one_global_cut(make_data, valid, test, roles):
    data = make_data(t=TEMPORAL)
    assert TemporalSplit(valid_fraction=valid, test_fraction=test)(data, "t", [], seed=0).tolist() == roles


def test_temporal_split_ties_broken_by_item(make_data):
    # ranks by (order, item): (b,1,0) (a,3,0) (b,0,5) (a,2,5) -> the last is test, the one before valid
    data = make_data(t=dict(users=["a", "a", "b", "b"], items=[3, 2, 1, 0], order=[0, 5, 0, 5]))
    roles = TemporalSplit(valid_fraction=0.25, test_fraction=0.25, ties="item")(data, "t", [], seed=0)
    assert roles.tolist() == [T, X, T, V]


def test_temporal_split_ties_keep_file_order_by_default(make_data):
    # ranks by (order, row): rows 0, 2 (order 0), then 1, 3 (order 5) -> row 3 test, row 1 valid
    data = make_data(t=dict(users=["a", "a", "b", "b"], items=[3, 2, 1, 0], order=[0, 5, 0, 5]))
    roles = TemporalSplit(valid_fraction=0.25, test_fraction=0.25)(data, "t", [], seed=0)
    assert roles.tolist() == [T, V, T, X]


def test_ratio_split_temporal_ties_follow_the_rule(make_data):
    # one user, four rows at the same time: the latest 25% (one row) is test, the one before valid
    data = make_data(t=dict(users=[0] * 4, items=[1, 3, 0, 2], order=[4] * 4))
    by_file = RatioSplit(ratios=(0.5, 0.25, 0.25), temporal=True)(data, "t", [], seed=0)
    by_item = RatioSplit(ratios=(0.5, 0.25, 0.25), temporal=True, ties="item")(data, "t", [], seed=0)
    assert by_file.tolist() == [T, T, V, X]
    assert by_item.tolist() == [T, X, T, V]


def orphan_data(make_data):
    """TEMPORAL plus user d, whose one target row (order 8.5) falls after the train cut."""
    spec = {k: [*v, w] for (k, v), w in zip(TEMPORAL.items(), ["d", 10, 8.5], strict=True)}
    return make_data(t=spec, s=dict(users=["a", "d"], items=[0, 0]))


# 11 rows, 0.2 / 0.2: floor(2.2) = 2 test (orders 9 and 8.5), floor(4.4) - 2 = 2 valid (orders 8 and 7)
ORPHAN_ROLES = [T, X, T, V, T, V, T, T, T, T, X]


def test_temporal_split_users_without_train_error(make_data):
    data = orphan_data(make_data)
    with pytest.raises(SplitError, match=r"leaves 1 users .*'d'.*data\.split\.users_without_train"):
        TemporalSplit(valid_fraction=0.2, test_fraction=0.2)(data, "t", ["s"], seed=0)


def test_temporal_split_users_without_train_keep(make_data):
    roles = TemporalSplit(0.2, 0.2, users_without_train="keep")(orphan_data(make_data), "t", ["s"], seed=0)
    assert roles.tolist() == ORPHAN_ROLES


def test_temporal_split_users_without_train_drop(make_data, static_source):
    data = orphan_data(make_data)
    split = TemporalSplit(0.2, 0.2, users_without_train="drop")
    assert split(data, "t", ["s"], seed=0).tolist() == ORPHAN_ROLES[:-1] + [-1]
    prepared = prepare(static_source(data), "t", ["s"], split=split)
    inter = prepared.data.domain("t").interactions
    assert prepared.roles.tolist() == ORPHAN_ROLES[:-1]  # d's row is gone, the rest keep their roles
    assert len(inter) == 10 and inter.order.tolist() == TEMPORAL["order"]
    assert "d" not in prepared.data.user_ids[inter.users].tolist()
    assert len(prepared.train("s")) == 2
    assert "split(TemporalSplit): t 11 -> 10 (1 held-out rows of users without training data)" in prepared.report


def test_temporal_split_bad_setting(make_data):
    data = make_data(t=TEMPORAL)
    with pytest.raises(SplitError, match="users_without_train must be"):
        TemporalSplit(users_without_train="ignore")(data, "t", [], seed=0)
    with pytest.raises(SplitError, match="order key"):
        TemporalSplit()(make_data(t=dict(users=[0], items=[0])), "t", [], seed=0)


# ---------------------------------------------------------------- ColdStartUsers

def cold_data(make_data):
    """t: users 0..14, 3 rows each; s: users 0..9 and 20..22; o: users 12..14 (ids equal indices 0..14)."""
    t_users = np.repeat(np.arange(15), 3)
    return make_data(t=dict(users=t_users, items=np.tile([0, 1, 2], 15)),
                     s=dict(users=[*range(10), 20, 21, 22], items=[0] * 13),
                     o=dict(users=[12, 13, 14], items=[5, 5, 5]))


def held_out_users(data, roles):
    users = data.domain("t").interactions.users
    by_user = roles_by_user(users, roles)
    for rs in by_user.values():
        assert len(set(rs)) == 1  # all of a user's target rows share one role: no target train for held-out users
    return ({u for u, rs in by_user.items() if rs[0] == V}, {u for u, rs in by_user.items() if rs[0] == X})


def test_cold_start_holds_out_shared_users_only(make_data):
    data = cold_data(make_data)
    roles = ColdStartUsers(holdout_fraction=0.4, valid_share=0.5)(data, "t", ["s"], seed=0)
    valid, test = held_out_users(data, roles)
    assert len(valid) == 2 and len(test) == 2  # round(0.4 * 10 shared) = 4 users, half of them valid
    assert not valid & test
    assert valid | test <= set(range(10))  # shared with the named source s only (not o's users 12..14)
    assert np.array_equal(roles, ColdStartUsers(0.4, 0.5)(data, "t", ["s"], seed=0))
    assert not np.array_equal(roles, ColdStartUsers(0.4, 0.5)(data, "t", ["s"], seed=1))


def test_cold_start_without_named_sources_uses_every_other_domain(make_data):
    data = cold_data(make_data)
    roles = ColdStartUsers(holdout_fraction=0.99, valid_share=0.5)(data, "t", [], seed=0)
    valid, test = held_out_users(data, roles)
    assert valid | test == {*range(10), 12, 13, 14}  # round(0.99 * 13) = 13: every shared user
    assert (len(valid), len(test)) == (7, 6)  # 0.5 * 13 = 6.5 rounds half up to 7


def test_cold_start_keeps_source_rows_of_held_out_users(make_data, static_source):
    data = cold_data(make_data)
    prepared = prepare(static_source(data), "t", ["s"], split=ColdStartUsers(0.5, 0.4))
    inter = prepared.data.domain("t").interactions
    held = set(inter.users[prepared.roles != TRAIN].tolist())
    assert len(held) == 5
    assert held.isdisjoint(prepared.train("t").users.tolist())
    source = prepared.train("s")
    assert len(source) == 13 and held <= set(source.users.tolist())
    assert prepared.domains == ["s", "t"]


def test_cold_start_needs_overlap(make_data):
    data = make_data(t=dict(users=[1, 2], items=[0, 0]), s=dict(users=[3, 4], items=[0, 0]))
    with pytest.raises(SplitError, match=r"users shared by the target 't' and a source domain \(s\)"):
        ColdStartUsers()(data, "t", ["s"], seed=0)


@pytest.mark.parametrize("kwargs, match", [(dict(holdout_fraction=0.0), "holdout_fraction"),
                                           (dict(holdout_fraction=1.0), "holdout_fraction"),
                                           (dict(valid_share=1.0), "valid_share"),
                                           (dict(valid_share=-0.5), "valid_share")])
def test_cold_start_bad_fractions(make_data, kwargs, match):
    with pytest.raises(SplitError, match=match):
        ColdStartUsers(**kwargs)(cold_data(make_data), "t", ["s"], seed=0)
