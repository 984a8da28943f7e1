"""Verdicts that count seeds (issue 24 §4) and baselines without verdicts (§5), through ``translearn-compare``."""

from __future__ import annotations

import json

import numpy as np

from translearn.cli.compare import main
from translearn.metrics.per_user import save_per_user

KEY = "test/target/ndcg@10"
STRATEGIES = {"target_only": "TargetOnly", "popularity": "Popularity", "joint": "Joint"}


def _run(folder, strategy: str, seed: int, per_user: np.ndarray) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- strategy={strategy}\n- seed={seed}\n")
    (folder / "metrics.json").write_text(json.dumps({"seed": seed, "strategy": STRATEGIES[strategy],
                                                     "data_manifest_key": "k" * 64, KEY: float(per_user.mean())}))
    users = np.arange(len(per_user))
    save_per_user(folder, users, {"ndcg@10": per_user}, users.astype(str))


def _rows(tmp_path, capsys) -> dict:
    assert main([str(tmp_path), "--json"]) == 0
    return {r["strategy"]: r for r in json.loads(capsys.readouterr().out)["rows"]}


def test_seed_variance_enters_the_verdict(tmp_path, capsys):
    # Many users, and seeds that disagree: +8% at seed 0, -6% at seed 1, +7% at seed 2 (same users each time).
    # Averaging each user over the seeds and resampling users alone calls that a gain; with the seeds resampled
    # too, the interval spans zero.
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, 2000)
    for seed, shift in enumerate((0.08, -0.06, 0.07)):
        _run(tmp_path / f"t{seed}", "target_only", seed, base)
        _run(tmp_path / f"j{seed}", "joint", seed, base * (1 + shift) + rng.normal(0, 0.01, len(base)))
    joint = _rows(tmp_path, capsys)["Joint"]
    assert joint["verdict"] == "no_evidence", joint
    assert joint["gain_ci"][0] < 0 < joint["gain_ci"][1]
    assert "two-level bootstrap: 3 seeds, then 2,000 users within each seed" in joint["basis"]
    assert main([str(tmp_path)]) == 0
    assert "3 seeds x users" in capsys.readouterr().out  # the table states the basis


def test_one_seed_is_said_in_the_table(tmp_path, capsys):
    base = np.linspace(0.1, 0.5, 100)
    _run(tmp_path / "t0", "target_only", 0, base)
    _run(tmp_path / "j0", "joint", 0, base * 1.2)
    joint = _rows(tmp_path, capsys)["Joint"]
    assert joint["verdict"] == "gain" and "one seed" in joint["basis"], joint
    assert main([str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "basis" in table.splitlines()[0] and "users, 1 seed" in table


def test_baselines_get_no_transfer_verdict(tmp_path, capsys):
    base = np.linspace(0.1, 0.5, 100)
    for seed in (0, 1):
        _run(tmp_path / f"t{seed}", "target_only", seed, base)
        _run(tmp_path / f"p{seed}", "popularity", seed, base * 0.5)
        _run(tmp_path / f"j{seed}", "joint", seed, base * 1.2)
    rows = _rows(tmp_path, capsys)
    for name in ("TargetOnly", "Popularity"):
        assert rows[name]["verdict"] is None and rows[name]["gain"] is None, rows[name]
        assert rows[name]["vs_popularity"] is None, rows[name]
    assert rows["Joint"]["verdict"] == "gain" and rows["Joint"]["vs_popularity"]["verdict"] == "gain"
