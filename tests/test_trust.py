"""Results are never silently wrong: divergence, resume, checkpoints, digests, monitor direction."""

from __future__ import annotations

import pytest

from translearn.cli.config import compose
from translearn.errors import DivergedError
from translearn.train import train


def test_a_nan_loss_weight_is_refused_before_training(tmp_path, run_overrides):
    with pytest.raises(ValueError, match=r"strategy\.lam=nan: expected a finite number"):
        train(compose([*run_overrides, "strategy.lam=nan"], output_dir=tmp_path / "run"))


def test_a_diverging_optimizer_stops_the_run_naming_epoch_and_term(tmp_path, run_overrides):
    with pytest.raises(DivergedError, match=r"diverged at epoch \d+, step \d+: non-finite loss_s=.*loss_t="):
        train(compose([*run_overrides, "optimizer=sgd", "optimizer.lr=1e30"], output_dir=tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.json").exists()
