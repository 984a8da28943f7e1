"""prepare(): preprocess -> split -> normalise -> negatives, the content-hash cache and the on-disk format."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from translearn.data.normalise import NormaliseRatings
from translearn.data.prepare import prepare
from translearn.data.prepared import PreparedData
from translearn.data.preprocess import Deduplicate, DropInvalid, ImplicitFeedback, StepReport
from translearn.data.protocols import SampledNegatives
from translearn.data.schema import CrossDomainData, Domain, Interactions
from translearn.data.sources import SyntheticSource
from translearn.data.splits import TEST, TRAIN, VALID

SOURCE = SyntheticSource(num_users=200, num_items=(80, 60), interactions_per_user=(10.0, 5.0), num_topics=4,
                         words_per_topic=5, words_per_item=4)


def run(**kwargs) -> PreparedData:
    args = dict(source=SOURCE, target="target", sources=["source"], preprocess={"dedup": Deduplicate()})
    return prepare(**(args | kwargs))


def assert_same(a: PreparedData, b: PreparedData) -> None:
    """Every array and field of two PreparedData equal (text and attributes included)."""
    assert (a.target, a.sources, a.key, a.split_name, a.report) == (b.target, b.sources, b.key, b.split_name, b.report)
    assert np.array_equal(a.data.user_ids, b.data.user_ids) and a.data.user_ids.dtype == b.data.user_ids.dtype
    assert np.array_equal(a.roles, b.roles) and a.roles.dtype == b.roles.dtype
    assert list(a.data.domains) == list(b.data.domains)
    for name, da in a.data.domains.items():
        db = b.data.domains[name]
        for field in ("users", "items", "ratings", "order"):
            x, y = getattr(da.interactions, field), getattr(db.interactions, field)
            assert (x is None) == (y is None), (name, field)
            if x is not None:
                assert x.dtype == y.dtype and np.array_equal(x, y), (name, field)
        assert da.item_ids.dtype == db.item_ids.dtype and np.array_equal(da.item_ids, db.item_ids)
        for field in ("item_text", "item_attributes"):
            x, y = getattr(da, field), getattr(db, field)
            assert (x is None) == (y is None) and (x is None or x.tolist() == y.tolist()), (name, field)
    assert sorted(a.eval_negatives) == sorted(b.eval_negatives)
    for role, neg in a.eval_negatives.items():
        assert neg.dtype == b.eval_negatives[role].dtype and np.array_equal(neg, b.eval_negatives[role])


def pairs(inter: Interactions) -> set[tuple[int, int]]:
    return set(zip(inter.users.tolist(), inter.items.tolist(), strict=True))


# ---------------------------------------------------------------- prepare on synthetic data

def test_prepare_roles_and_no_leak():
    p = run()
    target = p.data.domain("target").interactions
    assert len(p.roles) == len(target) and p.roles.dtype == np.int8
    assert set(np.unique(p.roles).tolist()) == {TRAIN, VALID, TEST}
    train = pairs(p.train("target"))
    valid, test = pairs(p.held_out("valid")), pairs(p.held_out("test"))
    assert train and valid and test
    assert not train & valid and not train & test and not valid & test
    # leave-one-out: one valid and one test row per user (every synthetic user has >= 3 target rows)
    assert len(p.held_out("valid")) == len(np.unique(p.held_out("valid").users)) == len(np.unique(target.users))
    # every source row is training data
    assert len(p.train("source")) == len(p.data.domain("source").interactions)
    assert p.domains == ["source", "target"]
    assert p.split_name == "LeaveOneOut"


@pytest.mark.parametrize("target, sources", [("nope", ["source"]), ("target", ["nope"])])
def test_prepare_unknown_domain_lists_the_domains(target, sources):
    with pytest.raises(ValueError, match=r"unknown domain 'nope' .*this data set has: source, target"):
        run(target=target, sources=sources)


def test_prepare_target_cannot_be_a_source():
    with pytest.raises(ValueError, match="both the target and a source"):
        run(sources=["source", "target"])


def test_prepare_drops_unused_domains(tiny_data, static_source):
    p = prepare(static_source(tiny_data), "t", [])
    assert p.data.domain_names == ["t"]
    assert "load: s 6 -> 0 (6 rows of a domain not used as target or source)" in p.report
    assert p.data.user_ids.tolist() == ["u1", "u2", "u3", "u5"]  # u4 was only in s: compacted away


def _note(domain: str, rows: int, low: str, high: str) -> str:
    return (f"positives: {domain}: {rows:,} rated rows all count as positives for ranking (ratings {low}-{high}); "
            "add data.preprocess.implicit (ImplicitFeedback threshold) to keep only high ratings")


def test_report_says_every_rating_counts_as_a_positive(tiny_data, static_source):
    # tiny_data: s has 6 rows rated 1-5, t has 13 rows rated 1-5
    p = prepare(static_source(tiny_data), "t", ["s"])
    assert _note("s", 6, "1", "5") in p.report and _note("t", 13, "1", "5") in p.report
    # a threshold on t: its note goes (7 of its ratings 1,2,3,4,5,1,2,3,4,5,1,2,3 are >= 3); s keeps its note
    p = prepare(static_source(tiny_data), "t", ["s"], {"implicit": ImplicitFeedback(threshold=3, keep_ratings=True,
                                                                                    domains=["t"])})
    assert _note("s", 6, "1", "5") in p.report
    assert not [line for line in p.report if line.startswith("positives: t:")]
    assert "implicit: t 13 -> 7 (6 ratings below 3)" in p.report


def test_no_positives_note_without_ratings(make_data, static_source):
    data = make_data(t=dict(users=[0, 0, 0, 1, 1, 1], items=[0, 1, 2, 0, 1, 2], order=[1, 2, 3, 1, 2, 3]))
    assert not [line for line in prepare(static_source(data), "t").report if line.startswith("positives")]


# ---------------------------------------------------------------- cache

def test_cache_hit_reads_the_entry(tmp_path, monkeypatch):
    first = run(cache_dir=tmp_path, protocol=SampledNegatives(5))
    entries = [p for p in tmp_path.iterdir()]
    assert [e.name for e in entries] == [first.key[:24]]
    assert sorted(f.name for f in entries[0].iterdir()) == ["arrays", "checksums.json", "manifest.json"]
    assert isinstance(first.data.domain("target").interactions.users, np.memmap)  # read back mapped

    def no_load(self):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(SyntheticSource, "load", no_load)
    second = run(cache_dir=tmp_path, protocol=SampledNegatives(5))
    assert_same(first, second)
    assert second.data.domain("target").item_text is not None
    with pytest.raises(AssertionError, match="cache should"):
        run(cache_dir=tmp_path, protocol=SampledNegatives(5), seed=1)  # another key: rebuilt


def test_cache_key_changes_with_every_setting(tmp_path):
    base = run(cache_dir=tmp_path)
    keys = {base.key,
            run(cache_dir=tmp_path, preprocess={"dedup": Deduplicate(keep="last")}).key,
            run(cache_dir=tmp_path, preprocess={"dedup": Deduplicate(), "drop": DropInvalid(rating_min=2)}).key,
            run(cache_dir=tmp_path, seed=3).key,
            run(cache_dir=tmp_path, protocol=SampledNegatives(7)).key}
    assert len(keys) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(k[:24] for k in keys)
    assert run(cache_dir=tmp_path).key == base.key and len(list(tmp_path.iterdir())) == 5


def test_cache_ignores_a_leftover_temp_dir(tmp_path, monkeypatch):
    fresh = run()
    # a run killed mid-write leaves its temp dir behind, with half-written files
    dead = tmp_path / f".tmp-{fresh.key[:24]}-killed"
    dead.mkdir()
    (dead / "manifest.json").write_text('{"key": "')
    (dead / "arrays.npz").write_bytes(b"PK\x03\x04 half")
    first = run(cache_dir=tmp_path)
    assert_same(fresh, first)
    assert (tmp_path / fresh.key[:24] / "manifest.json").is_file()
    monkeypatch.setattr(SyntheticSource, "load", lambda self: (_ for _ in ()).throw(AssertionError("rebuilt")))
    assert_same(fresh, run(cache_dir=tmp_path))
    assert [p.name for p in tmp_path.glob(".tmp-*")] == [dead.name]  # our own temp dir was renamed into place


# ---------------------------------------------------------------- on-disk format

def hand_prepared() -> PreparedData:
    t = Domain("t", Interactions(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 0]),
                                 np.array([1.5, 2, 3, 4], dtype=np.float32), np.array([0.5, 1, 2, 3])),
               np.array(["i0", "i1", "i2"]), np.array(["café ☕", "", "plain"], dtype=object),
               np.array(["a", "b|c", "d"], dtype=object))
    s = Domain("s", Interactions(np.array([0, 2]), np.array([1, 0])), np.array([10, 20]))
    empty = Domain("e", Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64)), np.array([], dtype="<U1"),
                   np.array([], dtype=object))
    data = CrossDomainData(np.array(["a", "b", "c"]), {"s": s, "e": empty, "t": t})
    negatives = {"valid": np.array([[1, 2]]), "test": np.array([[2, 1]])}
    return PreparedData(data, "t", ("s", "e"), np.array([0, 1, 0, 2], dtype=np.int8), negatives,
                        ("line one", "line two"), "k" * 64, "Hand")


def test_save_load_round_trip(tmp_path):
    p = hand_prepared()
    p.save(tmp_path)
    back = PreparedData.load(tmp_path)
    assert_same(p, back)
    assert back.data.domain("t").item_text.tolist() == ["café ☕", "", "plain"]
    assert back.data.domain("s").interactions.ratings is None and back.data.domain("s").item_text is None
    assert back.data.domain("e").num_items == 0 and back.data.domain("e").item_text.tolist() == []
    assert back.held_out("test").items.tolist() == [0]
    assert back.stats()["split"] == {"train": 2, "valid": 1, "test": 1, "eval_users": 2, "sampled_negatives": 2}


def test_an_entry_of_the_npz_format_still_loads(tmp_path):
    p = hand_prepared()
    np.savez(tmp_path / "arrays.npz", **p.arrays())
    (tmp_path / "manifest.json").write_text(json.dumps(p.manifest() | {"domains": list(p.data.domains)}))
    assert_same(p, PreparedData.load(tmp_path))


def test_mapped_arrays_are_read_only_and_shared(tmp_path):
    p = run()
    p.save(tmp_path)
    back = PreparedData.load(tmp_path)
    users = back.data.domain("target").interactions.users
    assert isinstance(users, np.memmap) and not users.flags.writeable
    assert not isinstance(PreparedData.load(tmp_path, mmap=False).data.domain("target").interactions.users,
                          np.memmap)


def test_save_load_round_trip_synthetic(tmp_path):
    p = run(protocol=SampledNegatives(4))
    p.save(tmp_path)
    assert_same(p, PreparedData.load(tmp_path))


# ---------------------------------------------------------------- sampled negatives

def test_sampled_negatives():
    p = run(protocol=SampledNegatives(20), seed=2)
    inter = p.data.domain("target").interactions
    positives: dict[int, set[int]] = {}
    for u, i in zip(inter.users.tolist(), inter.items.tolist(), strict=True):
        positives.setdefault(u, set()).add(i)
    for role in ("valid", "test"):
        held = p.held_out(role)
        neg = p.eval_negatives[role]
        assert neg.shape == (len(held), 20)
        assert neg.min() >= 0 and neg.max() < p.num_items("target")
        for u, row in zip(held.users.tolist(), neg.tolist(), strict=True):
            assert not positives[u] & set(row)  # never any of the user's target items, whatever their role
    again = run(protocol=SampledNegatives(20), seed=2)
    assert np.array_equal(again.eval_negatives["test"], p.eval_negatives["test"])
    other = run(protocol=SampledNegatives(20), seed=3)
    assert np.array_equal(other.roles, p.roles)  # the split has an order key: the seed only moves the negatives
    assert not np.array_equal(other.eval_negatives["test"], p.eval_negatives["test"])
    assert run(protocol=SampledNegatives(20), seed=2).stats()["split"]["sampled_negatives"] == 20
    assert run().eval_negatives == {}
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        SampledNegatives(0)


# ---------------------------------------------------------------- rating normalisation

@pytest.fixture
def rated(make_data, static_source):
    """Leave-one-out on t: u0 trains on ratings 2 and 4, u1 on 5; every valid row is 1000, every test row -1000."""
    data = make_data(t=dict(users=["u0"] * 4 + ["u1"] * 3, items=["a", "b", "c", "d", "a", "b", "c"],
                            ratings=[2, 4, 1000, -1000, 5, 1000, -1000], order=[1, 2, 3, 4, 1, 2, 3]),
                     s=dict(users=["u0", "u1"], items=["x", "y"], ratings=[1, 3]))

    def prepared(norm):
        p = prepare(static_source(data), "t", ["s"], preprocess={"norm": norm})
        assert p.roles.tolist() == [TRAIN, TRAIN, VALID, TEST, TRAIN, VALID, TEST]
        return p

    return prepared


MEAN, STD = 11 / 3, math.sqrt(14 / 9)  # of the training ratings 2, 4, 5 (population std)


# the source s is all training data (ratings 1 and 3, one per user): mean 2, std 1, min 1, max 3
@pytest.mark.parametrize("norm, expected, source", [
    (NormaliseRatings("center"), [r - MEAN for r in (2, 4, 1000, -1000, 5, 1000, -1000)], [-1, 1]),
    (NormaliseRatings("zscore"), [(r - MEAN) / STD for r in (2, 4, 1000, -1000, 5, 1000, -1000)], [-1, 1]),
    (NormaliseRatings("minmax"), [(r - 2) / 3 for r in (2, 4, 1000, -1000, 5, 1000, -1000)], [0, 1]),
    (NormaliseRatings("center", per_user=True), [-1, 1, 997, -1003, 0, 995, -1005], [0, 0]),
    # u0: mean 3, std 1; u1 has one training rating (std 0): its own mean, the domain's std
    (NormaliseRatings("zscore", per_user=True), [-1, 1, 997, -1003, 0, 995 / STD, -1005 / STD], [0, 0]),
])
def test_normalise_fits_on_training_rows_only(rated, norm, expected, source):
    p = rated(norm)
    got = p.data.domain("t").interactions.ratings
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert any("t: " in line and "fitted on 3 training rows" in line for line in p.report)
    assert p.data.domain("s").interactions.ratings.tolist() == pytest.approx(source)


def test_normalise_cache_key_differs(rated):
    assert rated(NormaliseRatings("center")).key != rated(NormaliseRatings("zscore")).key


def test_normalise_per_user_falls_back_for_users_without_training_rows():
    inter = Interactions(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 0]), np.array([1, 3, 10, 7], dtype=np.float32))
    train = np.array([True, True, True, False])
    mean, std = 14 / 3, math.sqrt(402 / 27)  # of the training ratings 1, 3, 10
    out = NormaliseRatings("center", per_user=True).apply("d", inter, train, 3, StepReport("n"))
    np.testing.assert_allclose(out.ratings, [-1, 1, 0, 7 - mean], rtol=1e-6)
    out = NormaliseRatings("zscore", per_user=True).apply("d", inter, train, 3, StepReport("n"))
    np.testing.assert_allclose(out.ratings, [-1, 1, 0, (7 - mean) / std], rtol=1e-6)


def test_normalise_errors():
    with pytest.raises(ValueError, match="zscore, center or minmax"):
        NormaliseRatings("log")
    with pytest.raises(ValueError, match="per_user"):
        NormaliseRatings("minmax", per_user=True)
    inter = Interactions(np.array([0]), np.array([0]), np.array([3.0], dtype=np.float32))
    with pytest.raises(ValueError, match="domain 'd' has no training ratings"):
        NormaliseRatings().apply("d", inter, np.array([False]), 1, StepReport("n"))
    implicit = Interactions(np.array([0]), np.array([0]))
    assert NormaliseRatings().apply("d", implicit, np.array([True]), 1, StepReport("n")) is implicit
