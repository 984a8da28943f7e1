"""Preprocessing steps on hand-made data: surviving rows, report counts and reasons."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.preprocess import (
    Deduplicate,
    DropInvalid,
    ImplicitFeedback,
    KCore,
    SparsifyDomain,
    compact,
    run_steps,
)
from translearn.data.schema import MISSING


def raw_rows(data, name):
    """Rows of a domain as (raw user, raw item) in row order (None for a missing id)."""
    dom = data.domain(name)
    inter = dom.interactions
    return [(None if u == MISSING else data.user_ids[u].item(), None if i == MISSING else dom.item_ids[i].item())
            for u, i in zip(inter.users, inter.items, strict=True)]


# ---------------------------------------------------------------- Deduplicate

# ratings tag the original row number, so the survivors can be read off the ratings
DUP = dict(users=["u1", "u1", "u2", "u1", "u2"], items=["i1", "i1", "i1", "i1", "i2"], ratings=[0, 1, 2, 3, 4])


@pytest.mark.parametrize("keep, with_order, rows", [
    ("first", True, [1, 2, 4]),   # (u1, i1) rows 0, 1, 3 have order 5, 2, 9: earliest is row 1
    ("last", True, [2, 3, 4]),    # latest is row 3
    ("first", False, [0, 2, 4]),  # without order: file order
    ("last", False, [2, 3, 4]),
])
def test_deduplicate(make_data, keep, with_order, rows):
    spec = DUP | ({"order": [5, 2, 1, 9, 3]} if with_order else {})
    data = make_data(d=spec, other=DUP)
    out, report = Deduplicate(keep=keep, domains=["d"])(data)
    assert out.domain("d").interactions.ratings.tolist() == rows
    assert report.domains == {"d": {"before": 5, "after": 3,
                                    "removed": {f"repeated (user, item) pairs, kept the {keep}": 2}}}
    assert len(out.domain("other").interactions) == 5  # not selected: untouched


def test_deduplicate_order_ties_keep_file_order(make_data):
    data = make_data(d=dict(users=["u", "u", "u"], items=["i", "i", "i"], ratings=[0, 1, 2], order=[4, 4, 4]))
    assert Deduplicate("first")(data)[0].domain("d").interactions.ratings.tolist() == [0]
    assert Deduplicate("last")(data)[0].domain("d").interactions.ratings.tolist() == [2]


def test_deduplicate_bad_keep(make_data):
    with pytest.raises(ValueError, match="'first' or 'last'"):
        Deduplicate(keep="middle")(make_data(d=DUP))


# ---------------------------------------------------------------- DropInvalid

def test_drop_invalid_counts_each_row_under_its_first_reason(make_data):
    data = make_data(d=dict(
        users=["u1", None, "u1", "u2", "u2", "u1", "u2", None, "u1"],
        items=["i1", "i1", None, "i2", "i1", "i2", "i2", None, "i1"],
        ratings=[3, np.nan, 3, np.nan, 6, 0, 5, 9, 4],
        order=[1, 2, 3, 4, 5, 6, 7, 8, np.nan],
    ))
    out, report = DropInvalid(rating_min=1, rating_max=5)(data)
    inter = out.domain("d").interactions
    assert raw_rows(out, "d") == [("u1", "i1"), ("u2", "i2")]
    assert inter.ratings.tolist() == [3, 5]  # 5 = rating_max is inside the range
    assert inter.order.tolist() == [1, 7]
    assert report.domains["d"] == {"before": 9, "after": 2, "removed": {
        "missing user id": 2,         # row 1 (also a NaN rating) and row 7 (also no item, rating 9)
        "missing item id": 1,         # row 2
        "missing order key": 1,       # row 8
        "missing rating": 1,          # row 3
        "rating outside [1, 5]": 2,   # rows 4 (6) and 5 (0)
    }}
    assert report.lines() == ["drop_invalid: d 9 -> 2 (2 missing user id; 1 missing item id; 1 missing order key; "
                              "1 missing rating; 2 rating outside [1, 5])"]


def test_drop_invalid_without_range_keeps_any_rating(make_data):
    data = make_data(d=dict(users=["u", "u"], items=["a", "b"], ratings=[-100, 1e6]))
    out, report = DropInvalid()(data)
    assert len(out.domain("d").interactions) == 2
    assert report.domains["d"]["removed"] == {}
    assert report.lines() == ["drop_invalid: d 2 -> 2 (nothing removed)"]


# ---------------------------------------------------------------- ImplicitFeedback

def test_implicit_feedback(make_data):
    data = make_data(d=dict(users=["u"] * 5, items=list("abcde"), ratings=[1, 4, 5, 3.5, 4]))
    out, report = ImplicitFeedback(threshold=4)(data)
    inter = out.domain("d").interactions
    assert raw_rows(out, "d") == [("u", "b"), ("u", "c"), ("u", "e")]
    assert inter.ratings is None
    assert report.domains["d"] == {"before": 5, "after": 3, "removed": {"ratings below 4": 2}}
    kept, _ = ImplicitFeedback(threshold=4, keep_ratings=True)(data)
    assert kept.domain("d").interactions.ratings.tolist() == [4, 5, 4]


def test_implicit_feedback_needs_ratings(make_data):
    data = make_data(rated=dict(users=["u"], items=["a"], ratings=[5]), clicks=dict(users=["u"], items=["a"]))
    with pytest.raises(ValueError, match="domain 'clicks' has no ratings"):
        ImplicitFeedback()(data)
    out, _ = ImplicitFeedback(domains=["rated"])(data)  # restricted to the rated domain: fine
    assert len(out.domain("clicks").interactions) == 1


# ---------------------------------------------------------------- KCore

def test_kcore_needs_two_rounds(make_data):
    # round 1 drops (u0, i0) (i0 has 1 row) and (u3, i2) (u3 has 1 row); that leaves u0 with one row,
    # dropped in round 2. A single pass would keep (u0, i1).
    data = make_data(d=dict(users=["u0", "u0", "u1", "u1", "u2", "u2", "u3"],
                            items=["i0", "i1", "i1", "i2", "i1", "i2", "i2"]))
    out, report = KCore(user_k=2, item_k=2)(data)
    assert raw_rows(out, "d") == [("u1", "i1"), ("u1", "i2"), ("u2", "i1"), ("u2", "i2")]
    rep = report.domains["d"]
    assert (rep["before"], rep["after"], sum(rep["removed"].values())) == (7, 4, 3)


def naive_kcore(pairs, user_k, item_k):
    """Reference k-core: repeatedly drop rows of users/items below the thresholds, one row list at a time."""
    rows = list(pairs)
    while True:
        users = {u: sum(1 for r in rows if r[0] == u) for u, _ in rows}
        items = {i: sum(1 for r in rows if r[1] == i) for _, i in rows}
        kept = [r for r in rows if users[r[0]] >= user_k and items[r[1]] >= item_k]
        if len(kept) == len(rows):
            return kept
        rows = kept


def test_kcore_result_is_the_k_core(make_data):
    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, 300)
    items = (rng.zipf(1.6, 300) % 30).astype(int)
    data = make_data(d=dict(users=users, items=items))
    out, _ = KCore(user_k=4, item_k=3)(data)
    got = raw_rows(out, "d")
    assert len(got) > 0
    u_count = {u: sum(1 for r in got if r[0] == u) for u, _ in got}
    i_count = {i: sum(1 for r in got if r[1] == i) for _, i in got}
    assert min(u_count.values()) >= 4 and min(i_count.values()) >= 3
    assert got == naive_kcore(zip(users.tolist(), items.tolist(), strict=True), 4, 3)


# ---------------------------------------------------------------- SparsifyDomain

def test_sparsify_by_interactions(make_data):
    rng = np.random.default_rng(0)
    n = 2000
    data = make_data(t=dict(users=rng.integers(0, 100, n), items=rng.integers(0, 50, n), ratings=np.arange(n)),
                     s=dict(users=[1, 2], items=[1, 2]))
    out, report = SparsifyDomain("t", keep_fraction=0.3, seed=5)(data)
    kept = out.domain("t").interactions.ratings
    assert 0.25 * n < len(kept) < 0.35 * n
    assert np.all(np.diff(kept) > 0)  # a subset of the rows, in their original order
    assert report.domains["t"]["after"] == len(kept)
    assert sum(report.domains["t"]["removed"].values()) == n - len(kept)
    assert len(out.domain("s").interactions) == 2
    again, _ = SparsifyDomain("t", keep_fraction=0.3, seed=5)(data)
    assert np.array_equal(again.domain("t").interactions.ratings, kept)
    other, _ = SparsifyDomain("t", keep_fraction=0.3, seed=6)(data)
    assert not np.array_equal(other.domain("t").interactions.ratings, kept)
    full, _ = SparsifyDomain("t", keep_fraction=1.0)(data)
    assert len(full.domain("t").interactions) == n


def test_sparsify_by_users_drops_whole_shared_users(make_data):
    # t: users 0..19, two rows each; s: users 0..11 and 50 -> shared users are 0..11
    t_users = np.repeat(np.arange(20), 2)
    data = make_data(t=dict(users=t_users, items=np.tile([0, 1], 20)),
                     s=dict(users=[*range(12), 50], items=[0] * 13))
    out, report = SparsifyDomain("t", keep_fraction=0.5, by="users", seed=1)(data)
    before = {u: 2 for u in range(20)}
    after = {}
    for u, _ in raw_rows(out, "t"):
        after[u] = after.get(u, 0) + 1
    assert all(after.get(u) == 2 for u in range(12, 20))  # target-only users keep everything
    dropped = [u for u in range(12) if u not in after]
    assert all(after.get(u) in (None, 2) for u in range(12))  # all of a shared user's rows or none
    assert 0 < len(dropped) < 12
    assert report.domains["t"] == {
        "before": 40, "after": 40 - 2 * len(dropped),
        "removed": {f"rows of {len(dropped)} of 12 shared users": 2 * len(dropped)}}
    assert sum(before.values()) - sum(after.values()) == 2 * len(dropped)
    assert len(out.domain("s").interactions) == 13
    again, _ = SparsifyDomain("t", keep_fraction=0.5, by="users", seed=1)(data)
    assert raw_rows(again, "t") == raw_rows(out, "t")


@pytest.mark.parametrize("kwargs, match", [
    (dict(keep_fraction=0.0), "keep_fraction"),
    (dict(keep_fraction=1.5), "keep_fraction"),
    (dict(keep_fraction=-0.1), "keep_fraction"),
    (dict(keep_fraction=0.5, by="items"), "by must be"),
])
def test_sparsify_bad_arguments(tiny_data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SparsifyDomain("t", **kwargs)(tiny_data)


def test_sparsify_unknown_domain(tiny_data):
    with pytest.raises(KeyError, match="unknown domain 'nope'.*s, t"):
        SparsifyDomain("nope", keep_fraction=0.5)(tiny_data)


# ---------------------------------------------------------------- compact and run_steps

def test_compact_reindexes_and_keeps_raw_ids_and_text_aligned(make_data):
    data = make_data(
        a=dict(users=["u0", "u1", "u2", "u3"], items=["p", "q", "r", "p"], ratings=[1, 2, 3, 4], order=[4, 3, 2, 1],
               catalog=["p", "q", "r", "s"], item_text=["P", "Q", "R", "S"], item_attributes=["pa", "qa", "ra", "sa"]),
        b=dict(users=["u3", "u1"], items=["k", "m"]),
    )
    # drop the rows of u1 and item q in a (-> u1 lives on in b), and u2/r (u2 is gone everywhere)
    a = data.domain("a")
    cut = data.replace_domains({**data.domains, "a": a.with_interactions(a.interactions.take(np.array([0, 3])))})
    out, report = compact(cut)
    assert out.user_ids.tolist() == ["u0", "u1", "u3"]
    dom = out.domain("a")
    assert dom.item_ids.tolist() == ["p"]
    assert dom.item_text.tolist() == ["P"] and dom.item_attributes.tolist() == ["pa"]
    assert raw_rows(out, "a") == [("u0", "p"), ("u3", "p")]
    assert dom.interactions.ratings.tolist() == [1, 4] and dom.interactions.order.tolist() == [4, 1]
    assert raw_rows(out, "b") == [("u3", "k"), ("u1", "m")]
    assert out.domain("b").item_ids.tolist() == ["k", "m"]
    assert report.notes == ["users 4 -> 3 (removed 1 users with no interactions left)",
                            "a items 4 -> 1 (removed 3 items with no interactions left)"]


def test_compact_text_follows_items_after_reindexing(make_data):
    data = make_data(d=dict(users=["u", "u"], items=["c", "e"], catalog=list("abcde"), item_text=list("ABCDE")))
    out, _ = compact(data)
    dom = out.domain("d")
    assert dom.item_ids.tolist() == ["c", "e"] and dom.item_text.tolist() == ["C", "E"]
    assert dom.item_text[dom.interactions.items].tolist() == ["C", "E"]


def test_run_steps_requires_missing_ids_dropped(make_data):
    data = make_data(d=dict(users=["u1", None, "u2"], items=["a", "b", None]))
    with pytest.raises(ValueError, match=r"'d' still has 2 rows .*drop_invalid"):
        run_steps(data, [])
    for step in (Deduplicate(), KCore(1, 1)):  # steps that count per id say so before numpy would fail
        with pytest.raises(ValueError, match=r"missing user or item id.*DropInvalid"):
            run_steps(data, [step])
    out, reports = run_steps(data, [DropInvalid(), Deduplicate()])
    assert raw_rows(out, "d") == [("u1", "a")]
    assert [r.step for r in reports] == ["drop_invalid", "deduplicate", "compact"]
    assert out.user_ids.tolist() == ["u1"] and out.domain("d").item_ids.tolist() == ["a"]


def test_steps_report_unknown_domains(tiny_data):
    with pytest.raises(KeyError, match="unknown domain 'zz'"):
        Deduplicate(domains=["zz"])(tiny_data)


def test_run_steps_with_no_steps_still_compacts():
    data = build_cross_domain({"d": RawDomain(users=np.array([1, 2]), items=np.array([5, 6]),
                                              catalog=np.array([5, 6, 7]), item_text=np.array(["x", "y", "z"]))})
    out, reports = run_steps(data, [])
    assert [r.step for r in reports] == ["compact"]
    assert out.domain("d").item_ids.tolist() == [5, 6]
