"""Evaluation that cannot be fooled by its own protocol (issue 24 §2): protocols that cannot rank are refused,
through the real entry points, as one-line user errors (exit status 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import refused
from omegaconf import OmegaConf

from translearn.cli.config import compose
from translearn.train import train


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished 1-epoch run on 57 target items, with .hydra/config.yaml as translearn-train writes it."""
    root = tmp_path_factory.mktemp("guarded")
    args = ["data.dataset.num_users=240", "data.dataset.num_items=[80,60]", "data.batch_size=128",
            "data.eval_batch_size=64", "trainer.max_epochs=1", "logger=none", "strategy=target_only",
            f"paths.cache_dir={root / 'cache'}"]
    cfg = compose(args, output_dir=root / "run")
    train(cfg)
    (root / "run" / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, root / "run" / ".hydra" / "config.yaml")
    return root / "run"


def test_more_sampled_negatives_than_candidates_is_refused(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", [*run_overrides, "data/protocol=sampled", "data.protocol.num_negatives=1000",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    refused(done, "data.protocol.num_negatives", "1000 sampled negatives", "candidate items")
    record = json.loads((tmp_path / "run" / "error.json").read_text())
    assert record["config_key"] == "data.protocol.num_negatives"


def test_the_documented_sampled_eval_on_a_catalogue_under_100_items_is_refused(run_cli, small_run):
    done = run_cli("translearn-eval", [small_run, "data/protocol=sampled"])
    refused(done, "data.protocol.num_negatives", "100 sampled negatives", "items and a held-out user")


def test_a_second_sampled_protocol_near_the_catalogue_size_is_refused(run_cli, small_run):
    # 50 < 57 items passes the count of items, but a held-out user has more than 7 items of their own
    done = run_cli("translearn-eval", [small_run, "evaluation.sampled_negatives=50"])
    refused(done, "evaluation.sampled_negatives", "50 sampled negatives", "candidate items")


def test_k_at_or_above_the_candidates_is_refused(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", [*run_overrides, "evaluation.ks=[10,1000]",
                                        f"hydra.run.dir={tmp_path / 'run'}"])
    refused(done, "evaluation.ks", "k=1000", "items in domain 'target' (full ranking)")
    done = run_cli("translearn-train", [*run_overrides, "data/protocol=sampled", "data.protocol.num_negatives=9",
                                        "evaluation.ks=[10]", f"hydra.run.dir={tmp_path / 'run2'}"])
    refused(done, "evaluation.ks", "k=10", "10 candidates per held-out item")


def test_a_target_with_one_user_is_refused(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    books = [f"u{u},b{i},{t}" for u in range(30) for t, i in enumerate(rng.choice(20, 5, replace=False))]
    movies = [f"u0,m{i},{t}" for t, i in enumerate(range(6))]  # one user (the run printed HR@10 = 1, AUC 0)
    (tmp_path / "b.csv").write_text("user_id,item_id,ts\n" + "\n".join(books) + "\n")
    (tmp_path / "m.csv").write_text("user_id,item_id,ts\n" + "\n".join(movies) + "\n")
    done = run_cli("translearn-train", [
        "data=tabular", f"+data.dataset.files={{books: {tmp_path / 'b.csv'}, movies: {tmp_path / 'm.csv'}}}",
        "data.dataset.order_column=ts", "data.target_domain=movies", "data.source_domains=[books]",
        "strategy=target_only", "trainer.max_epochs=1", "logger=none",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"])
    refused(done, "too small to rank", "1 user(s)", "at least 2")


def test_non_finite_scores_at_evaluation_are_an_error(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", [*run_overrides, "strategy=target_only", "model.init_std=1e30",
                                        "trainer.max_epochs=0", f"hydra.run.dir={tmp_path / 'run'}"])
    refused(done, "non-finite scores", "domain 'target'", "model.init_std")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert json.loads((tmp_path / "run" / "error.json").read_text())["error"] == "DivergedError"


def test_recommend_never_prints_an_infinite_score(run_cli, small_run, tmp_path):
    ckpt = torch.load(next((small_run / "checkpoints").glob("best-*.ckpt")), map_location="cpu", weights_only=False)
    ckpt["state_dict"] = {k: v * 1e30 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "huge.ckpt")
    done = run_cli("translearn-recommend", [small_run, "--all-users", "--checkpoint", tmp_path / "huge.ckpt"])
    refused(done, "non-finite scores", "recommendations of domain 'target'")
    assert "inf" not in done.stdout


def test_an_unknown_key_given_to_eval_is_refused(run_cli, small_run):
    done = run_cli("translearn-eval", [small_run, "evaluation.repeat=keep"])
    refused(done, "evaluation.repeat", "not in the run's config", "+evaluation.repeat=keep")
    done = run_cli("translearn-eval", [small_run, "evaluation.repeats=keep", "--split", "test"])
    assert done.returncode == 0, done.stderr[-2000:]
