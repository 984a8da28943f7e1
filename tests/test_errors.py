"""Bad input gets a clear error naming the config key, file, line or column and what was expected."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import MissingConfigException
from torch import nn

from translearn.build import ConfigError
from translearn.checkpoint_check import check_state, read_checkpoint
from translearn.checks import check_config
from translearn.cli.config import compose
from translearn.data import DataError, SplitError
from translearn.errors import CheckpointError, DivergedError, UserError, error_record, is_user_error, one_line
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
    with pytest.raises(ConfigError, match="no users in common"):  # a user error: one line from the CLI
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
    with pytest.raises(ConfigError, match="needs explicit ratings.*loss=bpr"):
        train(compose(overrides, output_dir=tmp_path))


# ---------------------------------------------------------------- check_config: no data needed, before training


@pytest.mark.parametrize("override, match", [
    ("optimizer.lr=-0.1", r"'optimizer.lr' must be a finite number >= 0, got -0.1"),
    ("optimizer.lr=inf", r"'optimizer.lr' must be a finite number >= 0, got inf"),
    ("optimizer.lr=fast", r"'optimizer.lr' must be a finite number >= 0, got 'fast'"),
    ("trainer.max_epochs=-2",
     r"'trainer.max_epochs' must be a whole number >= 1 \(0: no training, .*; -1: no limit\), got -2"),
    ("trainer.max_epochs=2.5", r"'trainer.max_epochs' must be a whole number"),
    ("monitor=test/target/ndcg@10", r"'monitor': test/target/ndcg@10 is a test metric"),
    ("monitor=val/target/ndcg@50", r"'monitor': val/target/ndcg@50 is never logged.*val/target/ndcg@20"),
    ("monitor=val/target/rmse", r"'monitor': val/target/rmse is never logged"),  # rmse only with a rating loss
])
def test_check_config_names_the_key(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        check_config(compose([override], output_dir=tmp_path))


def test_check_config_accepts_the_defaults_and_rating_metrics_with_a_rating_loss(tmp_path):
    check_config(compose([], output_dir=tmp_path))
    check_config(compose(["loss=mse", "monitor=val/target/rmse", "trainer.max_epochs=-1"], output_dir=tmp_path))


def test_check_config_lists_every_missing_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'data.source_domains' has no value.*data.source_domains, "
                                          r"data.target_domain") as err:
        check_config(compose(["data=tabular"], output_dir=tmp_path))
    assert err.value.config_key == "data.source_domains"


# ---------------------------------------------------------------- checkpoints


class _Tiny(nn.Module):
    def __init__(self, users: int, items: int) -> None:
        super().__init__()
        self.user_encoder = nn.Module()
        self.user_encoder.weight = nn.Parameter(torch.zeros(users, 4))
        self.item_encoders = nn.ModuleDict({"t": nn.Module()})
        self.item_encoders["t"].weight = nn.Parameter(torch.zeros(items, 4))


def test_checkpoint_of_other_sizes_names_the_counts(tmp_path):
    saved = {f"model.{k}": v for k, v in _Tiny(1500, 30).state_dict().items()}
    target = nn.Module()
    target.model = _Tiny(200, 30)
    with pytest.raises(CheckpointError, match=r"checkpoint x.ckpt has 1,500 users, the data has 200: it was trained "
                                              r"on another data set or model \(1 weight\(s\) differ"):
        check_state("x.ckpt", saved, target)
    target.model = _Tiny(1500, 40)
    with pytest.raises(CheckpointError, match=r"has 30 items in domain 't', the data has 40"):
        check_state("x.ckpt", saved, target)


def test_checkpoint_with_missing_and_unexpected_keys(tmp_path):
    target = nn.Module()
    target.model = _Tiny(5, 3)
    saved = {"model.user_encoder.weight": torch.zeros(5, 4), "teacher.user_encoder.weight": torch.zeros(5, 4)}
    with pytest.raises(CheckpointError, match=r"another model or strategy: it lacks model.item_encoders.t.weight; "
                                              r"has weights this model does not: teacher.user_encoder.weight"):
        check_state("x.ckpt", saved, target)


def test_a_torch_file_without_a_state_dict_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"w.pt is not a translearn training checkpoint \(it has no state_dict"):
        read_checkpoint(tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"nothing.ckpt: no such file"):
        read_checkpoint(tmp_path / "nothing.ckpt")


# ---------------------------------------------------------------- which errors are the user's


def test_user_error_classes_and_records(tmp_path):
    from omegaconf.errors import MissingMandatoryValue

    for err in (ConfigError("k"), DataError("bad", path="a.csv"), SplitError("s"), DivergedError("nan"),
                CheckpointError("c"), FileNotFoundError("f"), MissingMandatoryValue("m")):
        assert is_user_error(err), type(err).__name__
    assert not is_user_error(ValueError("a bug")) and not is_user_error(KeyError("a bug"))
    assert issubclass(DivergedError, UserError) and issubclass(DivergedError, ValueError)
    assert error_record(DataError("bad value", path="a.csv", line=3)) == {
        "error": "DataError", "message": "a.csv, line 3: bad value", "file": "a.csv"}
    assert error_record(ConfigError("config key 'x': no", config_key="x"))["config_key"] == "x"
    with pytest.raises(MissingConfigException) as err:
        compose(["model=nope"], output_dir=tmp_path)
    assert one_line(err.value) == ("In 'train': Could not find 'model/nope'; "
                                   "Available options in 'model': bitgcf, conet, dtcdr, gru4rec, lightgcn, mf, ncf, "
                                   "sasrec")
