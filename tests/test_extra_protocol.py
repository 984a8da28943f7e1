"""A second, sampled protocol beside full ranking (``evaluation.sampled_negatives``)."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.cli.config import compose
from translearn.data.extra_protocol import sampled_view
from translearn.errors import ConfigError
from translearn.train import train

# a fixed model at the end: no checkpoint selection and no early stopping, so both runs train the same
TINY = ["data.dataset.num_users=300", "trainer.max_epochs=2", "callbacks=none", "logger=none",
        "strategy=target_only"]


def test_the_second_protocol_equals_a_run_whose_primary_protocol_is_sampled(tmp_path) -> None:
    both = train(compose([*TINY, "evaluation.sampled_negatives=20"], output_dir=tmp_path / "both"))
    full = train(compose(TINY, output_dir=tmp_path / "full"))
    sampled = train(compose([*TINY, "data/protocol=sampled", "data.protocol.num_negatives=20"],
                            output_dir=tmp_path / "sampled"))
    for stage in ("val", "test"):
        for metric in ("ndcg@10", "hr@10", "mrr@10"):
            assert both[f"{stage}/target/{metric}"] == pytest.approx(full[f"{stage}/target/{metric}"], abs=1e-7)
            assert both[f"{stage}/target/sampled/{metric}"] == pytest.approx(
                sampled[f"{stage}/target/{metric}"], abs=1e-7)
    # 20 candidates plus the target: HR@10 far above full ranking's over 400 items
    assert both["test/target/sampled/hr@10"] > both["test/target/hr@10"]
    assert "test/target/sampled/ndcg@10" not in full


def test_negatives_are_saved_once_and_reused(tmp_path) -> None:
    from translearn.build import build_data

    cfg = compose(["data.dataset.num_users=200"], output_dir=tmp_path / "run")
    prepared = build_data(cfg.data, tmp_path / "cache")
    first = sampled_view(prepared, 30, seed=0, cache_dir=tmp_path / "cache")
    saved = tmp_path / "cache" / "sampled_protocol" / f"{prepared.key}-30.npz"
    assert saved.is_file()
    with np.load(saved) as f:
        assert np.array_equal(f["test"], first.eval_negatives["test"])
    assert first.eval_negatives["test"].shape == (len(prepared.held_out("test")), 30)
    held = prepared.held_out("test")
    train_keys = set(zip(prepared.train(prepared.target).users.tolist(), prepared.train(prepared.target).items.tolist(),
                         strict=True))
    negs = first.eval_negatives["test"]
    assert not any((u, i) in train_keys for u, row in zip(held.users.tolist(), negs.tolist(), strict=True)
                   for i in row)  # never a known item
    again = sampled_view(prepared, 30, seed=0, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.eval_negatives["valid"], first.eval_negatives["valid"])
    assert prepared.eval_negatives == {}  # the primary (full ranking) data is untouched


@pytest.mark.parametrize("value", [0, 10_000])
def test_bad_counts_name_the_key(tmp_path, value) -> None:
    with pytest.raises(ConfigError, match="evaluation.sampled_negatives"):
        train(compose([*TINY, f"evaluation.sampled_negatives={value}"], output_dir=tmp_path / "run"))
