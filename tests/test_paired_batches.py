"""Paired training batches (``reads = {"paired"}``): shared users only, the same user in row b of every domain,
training rows only."""

from __future__ import annotations

import numpy as np
import pytest

from translearn.data.datamodule import CrossDomainDataModule, PairedBatches
from translearn.data.prepare import prepare
from translearn.data.preprocess import Deduplicate
from translearn.data.sources import SyntheticSource
from translearn.data.splits import TRAIN


@pytest.fixture(scope="module")
def synthetic():
    source = SyntheticSource(num_users=80, num_items=(30, 20), interactions_per_user=(6.0, 4.0), num_topics=3,
                             words_per_topic=4, words_per_item=3, overlap=0.6)
    return prepare(source, "target", ["source"], preprocess={"dedup": Deduplicate()})


def _keys(prepared, domain, train: bool) -> set[tuple[int, int]]:
    inter = prepared.data.domain(domain).interactions
    pick = (prepared.role_of(domain) == TRAIN) == train
    return set(zip(inter.users[pick].tolist(), inter.items[pick].tolist(), strict=True))


def test_paired_batches_pair_shared_users_on_training_rows_only(synthetic):
    data = PairedBatches(synthetic, ["target", "source"], num_negatives=2, seed=0)
    shared = np.intersect1d(synthetic.train("target").users, synthetic.train("source").users)
    assert np.array_equal(data.shared, shared) and 0 < len(shared) < synthetic.num_users
    train = {d: _keys(synthetic, d, True) for d in ("target", "source")}
    held = _keys(synthetic, "target", False) - train["target"]
    assert held  # the split holds rows out
    data.set_epoch(0)
    seen = 0
    for start in range(0, len(data), 64):
        batch = data.__getitems__(list(range(start, min(start + 64, len(data)))))
        users = batch["target"]["users"].numpy()
        for d in ("target", "source"):
            part = batch[d]
            assert np.array_equal(part["users"].numpy(), users)  # row b: the same user in every domain
            pairs = set(zip(users.tolist(), part["items"].tolist(), strict=True))
            assert pairs <= train[d]
            assert d != "target" or not pairs & held
            assert part["negatives"].shape == (len(users), 2)
        assert np.isin(users, shared).all()
        seen += len(users)
    assert seen == len(data) == int(np.isin(synthetic.train(data.anchor).users, shared).sum())


def test_data_module_builds_paired_batches_only_when_asked(synthetic):
    plain = CrossDomainDataModule(synthetic, ["target", "source"], batch_size=32)
    batch = next(iter(plain.train_dataloader()))
    assert len(batch["target"]["users"]) != len(batch["source"]["users"]) or \
        not np.array_equal(batch["target"]["users"], batch["source"]["users"])
    paired = CrossDomainDataModule(synthetic, ["target", "source"], batch_size=32, paired=True)
    batch = next(iter(paired.train_dataloader()))
    assert np.array_equal(batch["target"]["users"], batch["source"]["users"])
    with pytest.raises(ValueError, match="two training domains"):
        next(iter(CrossDomainDataModule(synthetic, ["target"], paired=True).train_dataloader()))


def test_build_datamodule_pairs_batches_for_a_model_that_declares_it(tmp_path):
    from translearn.build import build_datamodule, build_model, build_run_data, build_strategy
    from translearn.cli.config import compose

    cfg = compose(["strategy=joint", "data.dataset.num_users=60", "data.dataset.num_items=[30,25]",
                   f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path)
    prepared = build_run_data(cfg)
    model = build_model(cfg, prepared)
    assert not build_datamodule(cfg, prepared, build_strategy(cfg, prepared, model)).paired
    model.reads = frozenset({"paired"})  # as a CoNet-style model class declares it
    module = build_datamodule(cfg, prepared, build_strategy(cfg, prepared, model))
    assert module.paired and isinstance(module.train_dataloader().dataset, PairedBatches)


def test_strategies_take_a_paired_model_or_refuse_in_one_line():
    from translearn.models import matrix_factorization
    from translearn.strategies import FineTune, Joint, TargetOnly

    model = matrix_factorization(4, {"t": 3, "s": 3})
    model.reads = frozenset({"paired"})
    assert Joint.refuses_model(model) is None
    assert "paired batches" in TargetOnly.refuses_model(model) and "source-stage" in FineTune.refuses_model(model)
