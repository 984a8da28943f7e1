"""Strategy facts come from the training data (by hand on tiny data) and cannot be skipped from Python."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from translearn.data import prepare
from translearn.data.facts import DataFacts
from translearn.models import matrix_factorization
from translearn.strategies import FeatureReuse, FineTune, Joint, Mapping, Popularity


def test_facts_by_hand(tiny_data, static_source):
    prepared = prepare(static_source(tiny_data), "t", ["s"])
    facts = DataFacts.of(prepared)
    users = [str(u) for u in prepared.data.user_ids]
    assert users == ["u1", "u2", "u3", "u4", "u5"]
    assert facts.trained_users["s"].tolist() == [True, True, True, True, False]
    assert facts.trained_users["t"].tolist() == [True, True, True, False, True]
    assert facts.shared_users == {"s": 3}  # u1..u3 have source rows and target rows
    # target training rows after leave-one-out: u1 x, u2 x w, u3 z, u5 v (catalogue v w x y z)
    assert facts.target_item_counts.tolist() == [1, 1, 2, 0, 1]
    assert facts.has_ratings == {"s": True, "t": True}
    assert facts.users_with_training_data(["s", "t"]).all()
    with pytest.raises(KeyError, match="no facts for domain 'x'"):
        facts.users_with_training_data(["x"])


def _mf():
    return matrix_factorization(5, {"s": 3, "t": 5}, embedding_dim=2)


@pytest.mark.parametrize("make", [
    lambda: Joint(_mf(), "t", ["s"]),
    lambda: Popularity(_mf(), "t"),
    lambda: FeatureReuse(_mf(), "t", ["s"], source_model=_mf()),
    lambda: Mapping(_mf(), "t", ["s"], source_model=_mf()),
    lambda: FineTune(_mf(), "t", ["s"], source_model=_mf(), freeze=["user_encoder"]),
])
def test_strategies_that_need_facts_refuse_to_run_without_them(make):
    with pytest.raises(TypeError, match=r"needs facts=DataFacts.of\(prepared\)"):
        make()


def test_facts_shape_what_the_strategy_does(tiny_data, static_source):
    prepared = prepare(static_source(tiny_data), "t", ["s"])
    facts = DataFacts.of(prepared)
    popularity = Popularity(_mf(), "t", facts=facts)
    assert popularity.counts.tolist() == [1.0, 1.0, 2.0, 0.0, 1.0]
    source = _mf()
    reuse = FeatureReuse(_mf(), "t", ["s"], source_model=source, facts=facts)
    frozen = reuse.model.user_encoder.frozen
    assert torch.equal(frozen[4], torch.zeros(2))  # u5 has no source data: a zero source vector
    assert torch.equal(frozen[:4], source.user_encoder.weight[:4].detach())
    mapping = Mapping(_mf(), "t", ["s"], source_model=_mf(), facts=facts)
    assert mapping.map_users.tolist() == [0, 1, 2]  # target training data and source data: u1..u3
    no_overlap = DataFacts("t", ("s",), {"s": np.zeros(5, bool), "t": np.ones(5, bool)}, {"s": 0},
                           np.zeros(5, np.int64), {"s": False, "t": False})
    with pytest.raises(ValueError, match="shares 0 users"):
        FineTune(_mf(), "t", ["s"], source_model=_mf(), freeze=["user_encoder"], facts=no_overlap)
