"""The stage's own validation slice: taken from its training rows only, the main run's data stays whole."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.data import prepare
from translearn.data.splits import TRAIN, VALID


def _pairs(prepared, domain, mask=None):
    inter = prepared.data.domain(domain).interactions
    ids = prepared.data.domain(domain).item_ids
    rows = range(len(inter)) if mask is None else np.flatnonzero(mask)
    return sorted((str(prepared.data.user_ids[inter.users[r]]), str(ids[inter.items[r]])) for r in rows)


def test_a_joint_stage_validates_on_the_last_training_row_and_never_sees_held_out_rows(tiny_data, static_source):
    prepared = prepare(static_source(tiny_data), "t", ["s"])
    roles_before = prepared.roles.copy()
    view = prepared.stage_view(["s", "t"], "t")
    # Leave-one-out leaves t's training rows: u1 x@10, u2 x@11 w@21, u3 z@12, u5 v@13. Only u2 has 2+,
    # so the slice is its last training row (w@21); the target's valid and test rows are gone.
    assert _pairs(view, "t") == _pairs(prepared, "t", prepared.roles == TRAIN)
    assert _pairs(view, "t", view.roles == VALID) == [("u2", "w")]
    assert (view.roles != VALID).sum() == 4 and view.held_out("test").users.size == 0
    assert _pairs(view, "s") == _pairs(prepared, "s")  # a source stays whole
    assert view.target == "t" and view.sources == ("s",)
    assert np.array_equal(prepared.roles, roles_before)  # the main run's data is untouched
    assert len(prepared.train("t")) == 5 and len(prepared.train("s")) == 6


def test_a_source_stage_holds_out_each_users_last_source_row(tiny_data, static_source):
    prepared = prepare(static_source(tiny_data), "t", ["s"])
    view = prepared.stage_view(["s"], "s")
    # s: u1 a@1 b@2, u2 a@3, u3 c@4, u4 b@5 c@6 -> the last rows of u1 and u4 (u2, u3 keep their only row)
    assert _pairs(view, "s", view.roles == VALID) == [("u1", "b"), ("u4", "c")]
    assert list(view.data.domains) == ["s"] and view.target == "s" and view.sources == ()
    assert _pairs(view, "s", view.roles == TRAIN) == [("u1", "a"), ("u2", "a"), ("u3", "c"), ("u4", "b")]


def test_the_slice_follows_the_split_tie_rule(make_data, static_source):
    # u1's last two source rows tie at order 2: file_order takes the later row (c), item the higher item (d)
    data = make_data(s=dict(users=["u1"] * 3, items=["a", "d", "c"], order=[1, 2, 2], catalog=["a", "c", "d"]),
                     t=dict(users=["u1"] * 3, items=["x", "y", "z"], order=[1, 2, 3], catalog=["x", "y", "z"]))
    from translearn.data import LeaveOneOut

    for ties, last in (("file_order", "c"), ("item", "d")):
        prepared = prepare(static_source(data, ties), "t", ["s"], split=LeaveOneOut(ties=ties))
        assert prepared.ties == ties
        view = prepared.stage_view(["s"], "s")
        assert _pairs(view, "s", view.roles == VALID) == [("u1", last)]


def test_without_hold_out_every_row_trains_and_a_bad_domain_is_named(tiny_data, static_source):
    prepared = prepare(static_source(tiny_data), "t", ["s"])
    assert (prepared.stage_view(["s"], "s", hold_out=False).roles == TRAIN).all()
    with pytest.raises(ValueError, match="validates on 't', which is not among its domains"):
        prepared.stage_view(["s"], "t")
