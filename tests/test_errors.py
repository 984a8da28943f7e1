"""Bad input gets a clear error naming the config key, file, line or column and what was expected."""

from __future__ import annotations

import pytest
from hydra.errors import MissingConfigException

from translearn.build import ConfigError
from translearn.cli.config import compose
from translearn.data import DataError, SplitError
from translearn.train import train


def test_unknown_strategy_lists_the_options(tmp_path):
    with pytest.raises(MissingConfigException) as err:
        compose(["strategy=nope"], output_dir=tmp_path)
    assert "joint" in str(err.value) and "target_only" in str(err.value)


def test_unknown_data_set_lists_the_options(tmp_path):
    with pytest.raises(MissingConfigException) as err:
        compose(["data=nope"], output_dir=tmp_path)
    assert "arts_office" in str(err.value) and "synthetic" in str(err.value)


def test_unknown_domain_names_the_key_and_the_domains(tmp_path, run_overrides):
    with pytest.raises(ValueError, match=r"unknown domain 'books' \(data.target_domain.*source, target"):
        train(compose([*run_overrides, "data.target_domain=books"], output_dir=tmp_path))


def test_negative_lambda_names_the_key(tmp_path, run_overrides):
    with pytest.raises(ConfigError, match=r"strategy.*lam must be >= 0"):
        train(compose([*run_overrides, "strategy.lam=-0.5"], output_dir=tmp_path))


def test_joint_without_shared_users(tmp_path, run_overrides):
    with pytest.raises(ValueError, match="no users in common"):
        train(compose([*run_overrides, "data.dataset.overlap=0.0"], output_dir=tmp_path))


def test_split_that_leaves_users_without_training_data(tmp_path, run_overrides):
    # On synthetic data the order key is random, so a global time cut leaves some users with only
    # held-out interactions in the target.
    overrides = [*run_overrides, "data/split=temporal", "data.split.test_fraction=0.5"]
    with pytest.raises(SplitError, match=r"without training data.*users_without_train"):
        train(compose(overrides, output_dir=tmp_path))


def test_missing_column_and_malformed_row_in_user_files(tmp_path, run_overrides):
    good = tmp_path / "books.csv"
    good.write_text("uid,iid\n1,a\n1,b\n1,c\n2,a\n2,b\n2,c\n")
    bad_col = tmp_path / "movies.csv"
    bad_col.write_text("user,iid\n1,x\n")
    base = [*run_overrides[3:], "data=tabular", "data.source_domains=[books]", "data.target_domain=movies",
            "data.dataset.user_column=uid", "data.dataset.item_column=iid", "strategy=target_only"]
    files = f"+data.dataset.files={{books: {good}, movies: {bad_col}}}"
    with pytest.raises(DataError, match=r"movies.csv, column 'uid'.*has columns: user, iid"):
        train(compose([*base, files], output_dir=tmp_path))
    bad_row = tmp_path / "movies2.csv"
    bad_row.write_text("uid,iid\n1,x\n1,y,z\n")
    files = f"+data.dataset.files={{books: {good}, movies: {bad_row}}}"
    with pytest.raises(DataError, match=r"movies2.csv, line 3"):
        train(compose([*base, files], output_dir=tmp_path))


def test_mse_on_implicit_data_says_what_to_use(tmp_path, run_overrides):
    overrides = [*run_overrides, "loss=mse", "strategy=target_only",
                 "+data.preprocess.implicit._target_=translearn.data.ImplicitFeedback"]
    with pytest.raises(ValueError, match="needs explicit ratings.*loss=bpr"):
        train(compose(overrides, output_dir=tmp_path))
