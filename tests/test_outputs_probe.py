"""translearn-probe: attribute labels, the probe on hand-made vectors, and the CLI on a features folder of the tiny
MF run (conftest ``mf_run``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import call_main

from translearn.cli import features as features_cli
from translearn.cli import probe as probe_cli
from translearn.errors import UserError
from translearn.outputs import attribute_labels, fit_probe, load_run


def test_attribute_labels_by_word_or_regex() -> None:
    arts = np.array(["arts crafts sewing crafting picture framing", "arts crafts sewing sewing quilting",
                     "arts", "", None], dtype=object)
    assert attribute_labels(arts, word=0).tolist() == ["arts", "arts", "arts", None, None]
    assert attribute_labels(arts, word=3).tolist() == ["crafting", "sewing", None, None, None]
    assert attribute_labels(np.array(["a|b, c d"]), word=2).tolist() == ["c"]
    assert attribute_labels(arts, regex=r"sewing (\w+)").tolist() == ["crafting", "sewing", None, None, None]
    assert attribute_labels(arts, regex=r"qu\w+").tolist() == [None, "quilting", None, None, None]
    with pytest.raises(UserError, match="exactly one"):
        attribute_labels(arts, word=1, regex="x")
    with pytest.raises(UserError, match="--regex"):
        attribute_labels(arts, regex="(")


def _labelled(counts: dict[str, int]) -> np.ndarray:
    return np.asarray([c for c, n in counts.items() for _ in range(n)], dtype=object)


def test_probe_finds_an_attribute_the_vectors_carry_and_reports_the_baseline() -> None:
    labels = _labelled({"sewing": 30, "painting": 20, "beading": 10, "rare": 3})
    labels = np.concatenate([labels, [None, None]])
    rng = np.random.default_rng(0)
    code = {"sewing": 0, "painting": 1, "beading": 2, "rare": 3}
    carry = np.stack([np.eye(8)[code[c]] * 2.0 if c else np.zeros(8) for c in labels]) + rng.normal(0, 0.3, (65, 8))
    result = fit_probe(carry, labels, min_count=5, test_fraction=0.2, seed=1)
    assert result["classes"] == 3 and result["dropped_classes"] == 1 and result["dropped_items"] == 3
    assert result["items_without_value"] == 2 and result["items"] == 65
    assert result["test_items"] == 6 + 4 + 2 and result["train_items"] == 24 + 16 + 8  # stratified, per class
    assert result["majority_baseline"] == pytest.approx(6 / 12) and result["majority_class"] == "sewing"
    assert result["accuracy"] == 1.0 and result["balanced_accuracy"] == 1.0
    assert result["class_counts"] == {"sewing": 30, "painting": 20, "beading": 10}
    noise = fit_probe(rng.normal(size=(65, 8)), labels, min_count=5, test_fraction=0.2, seed=1)
    assert noise["accuracy"] < 1.0 and noise["test_items"] == 12  # same split, nothing to find


def test_probe_refuses_a_constant_attribute_and_bad_settings() -> None:
    vectors = np.zeros((20, 4))
    with pytest.raises(UserError, match="is constant: every item with a value has 'arts'"):
        fit_probe(vectors, _labelled({"arts": 20}))
    with pytest.raises(UserError, match=r"1 class\(es\) with >= 10 items"):
        fit_probe(vectors, _labelled({"a": 15, "b": 5}))
    with pytest.raises(UserError, match="--min-count"):
        fit_probe(vectors, _labelled({"a": 10, "b": 10}), min_count=1)


def test_probe_cli_on_a_features_folder_with_vectors_that_carry_the_label(mf_run, tmp_path, capsys) -> None:
    """Labels: the first letter of each target item's text (--regex); the features folder's vectors are
    replaced by hand-made ones that encode that letter, so the probe must find it."""
    assert call_main(features_cli.main, [mf_run, "--out", tmp_path / "f"], capsys)[0] == 0
    prepared = load_run(mf_run).prepared
    letters = attribute_labels(prepared.data.domain("target").item_text, regex=r"^(\w)")
    alphabet = sorted(set(letters.tolist()))
    rng = np.random.default_rng(0)
    hand = np.stack([np.eye(len(alphabet))[alphabet.index(c)] for c in letters]) + rng.normal(0, 0.05, (len(letters),
                                                                                                      len(alphabet)))
    np.save(tmp_path / "f" / "items_target.npy", hand.astype(np.float32))
    args = [tmp_path / "f", "--attribute", "text", "--regex", r"^(\w)", "--min-count", 3, "--out", tmp_path / "p.json"]
    code, out, _ = call_main(probe_cli.main, args, capsys)
    assert code == 0 and "accuracy 1.0000" in out and "majority baseline" in out
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["accuracy"] == 1.0 > result["majority_baseline"] and result["classes"] >= 2
    assert result["features"] == str(tmp_path / "f") and result["domain"] == "target"
    code, out, _ = call_main(probe_cli.main, [mf_run, "--attribute", "text", "--regex", r"^(\w)", "--min-count", 3,
                                              "--json"], capsys)  # the run's own (trained) vectors
    trained = json.loads(out)
    assert code == 0 and trained["classes"] == result["classes"] and trained["test_items"] == result["test_items"]
    assert 0.0 <= trained["accuracy"] <= 1.0 and trained["family"] == "id"


def test_probe_cli_errors(mf_run, tmp_path, capsys) -> None:
    code, _, err = call_main(probe_cli.main, [mf_run, "--attribute", "attributes", "--word", 0], capsys)
    assert code == 2 and "--attribute attributes --word 0 is constant" in err and "'target'" in err
    code, _, err = call_main(probe_cli.main, [mf_run, "--attribute", "attributes", "--word", 9], capsys)
    assert code == 2 and "no value for any" in err
