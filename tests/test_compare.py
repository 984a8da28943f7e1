"""translearn-compare: rows, labels, baselines, the paired bootstrap and the verdicts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from translearn.cli.compare import main
from translearn.compare.stats import paired_bootstrap, t_interval, verdict
from translearn.metrics.per_user import save_per_user

KEY = "test/target/ndcg@10"


def _fake_run(folder, overrides, metrics, per_user=None, sweep=False):
    """A run folder as translearn-train leaves it; ``per_user``: ndcg@10 per user (users 0..U-1)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("\n".join(f"- {o}" for o in overrides) + "\n")
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    strategy = {"target_only": "TargetOnly", "popularity": "Popularity"}.get(
        next((o.split("=")[1] for o in overrides if o.startswith("strategy=")), ""), "Joint")
    (folder / "metrics.json").write_text(json.dumps({"seed": seed, "strategy": strategy,
                                                     "data_manifest_key": "k" * 64, **metrics}))
    if per_user is not None:
        users = np.arange(len(per_user))
        save_per_user(folder, users, {"ndcg@10": np.asarray(per_user, dtype=float)}, users.astype(str))
    if sweep:
        (folder.parent / "multirun.yaml").write_text("{}\n")


def test_t_interval_by_hand():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * sd 1 / sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert t_interval([1.0]) is None


def test_bootstrap_of_a_constant_difference_is_that_difference():
    b = np.array([0.1, 0.2, 0.3, 0.4])
    result = paired_bootstrap(b * 1.5, b)  # every user +50%: every resample gives exactly +50%
    assert result.gain == pytest.approx(0.5) and result.gain_ci == pytest.approx((0.5, 0.5))
    assert result.diff_ci[0] > 0 and verdict(*result.diff_ci) == "gain"
    same = paired_bootstrap(b, b)
    assert same.diff_ci == (0.0, 0.0) and verdict(*same.diff_ci) == "no_evidence"
    assert verdict(-0.2, -0.01) == "negative_transfer"


def test_bootstrap_interval_spans_zero_for_a_symmetric_difference():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.2, 0.4, 400)
    a = b + rng.choice([-0.05, 0.05], 400)  # half the users up, half down: no evidence either way
    result = paired_bootstrap(a, b)
    assert result.diff_ci[0] < 0 < result.diff_ci[1] and verdict(*result.diff_ci) == "no_evidence"


def test_rows_gain_and_verdict_from_per_user_files(tmp_path, capsys):
    base = np.linspace(0.1, 0.5, 50)
    for s in (0, 1):
        _fake_run(tmp_path / f"t{s}", ["strategy=target_only", "model.embedding_dim=32", f"seed={s}"],
                  {KEY: float(base.mean())}, per_user=base)
        _fake_run(tmp_path / f"j{s}", ["strategy=joint", "model.embedding_dim=32", f"seed={s}"],
                  {KEY: float(base.mean() * 0.8)}, per_user=base * 0.8)  # every user 20% lower
    assert main([str(tmp_path), "--json"]) == 0
    rows = {r["row"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert set(rows) == {"strategy=target_only", "strategy=joint"}  # the shared key is not in the labels
    joint = rows["strategy=joint"]
    assert joint["gain"] == pytest.approx(-0.2) and joint["gain_ci"] == pytest.approx([-0.2, -0.2])
    assert joint["verdict"] == "negative_transfer" and "50 users" in joint["basis"]
    assert joint["vs_popularity"] is None and rows["strategy=target_only"]["verdict"] is None


def test_without_per_user_files_the_seed_interval_decides(tmp_path, capsys):
    for s, (t, j) in enumerate([(0.10, 0.13), (0.11, 0.14), (0.12, 0.15)]):
        _fake_run(tmp_path / f"t{s}", ["strategy=target_only", f"seed={s}"], {KEY: t})
        _fake_run(tmp_path / f"j{s}", ["strategy=joint", f"seed={s}"], {KEY: j})
    assert main([str(tmp_path), "--json"]) == 0
    joint = next(r for r in json.loads(capsys.readouterr().out)["rows"] if r["strategy"] == "Joint")
    gains = [0.03 / 0.10, 0.03 / 0.11, 0.03 / 0.12]
    assert joint["gain"] == pytest.approx(np.mean(gains)) and joint["verdict"] == "gain"
    assert joint["gain_ci"] == pytest.approx(list(t_interval(gains)[1:])) and "seeds" in joint["basis"]


def test_two_sweeps_of_the_same_setting_are_not_pooled(tmp_path, capsys):
    for sweep in ("a", "b"):
        for s in (0, 1):
            _fake_run(tmp_path / sweep / str(s), ["strategy=joint", f"seed={s}"], {KEY: 0.1 + s / 100}, sweep=True)
    assert main([str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert sorted(r["row"] for r in rows) == ["[sweep a]", "[sweep b]"]
    assert all(r["n"] == 2 and r["seeds"] == [0, 1] for r in rows)


def test_a_baseline_with_other_seeds_or_data_is_refused(tmp_path, capsys):
    _fake_run(tmp_path / "t0", ["strategy=target_only", "seed=0"], {KEY: 0.1})
    _fake_run(tmp_path / "j0", ["strategy=joint", "seed=0"], {KEY: 0.1})
    _fake_run(tmp_path / "j1", ["strategy=joint", "seed=1"], {KEY: 0.1})
    assert main([str(tmp_path)]) == 2
    assert "seeds [0, 1] but its target_only baseline" in capsys.readouterr().err
    (tmp_path / "j1" / "metrics.json").unlink()
    meta = json.loads((tmp_path / "t0" / "metrics.json").read_text()) | {"data_manifest_key": "x" * 64}
    (tmp_path / "t0" / "metrics.json").write_text(json.dumps(meta))
    assert main([str(tmp_path)]) == 2
    assert "different data" in capsys.readouterr().err


def test_failed_jobs_are_listed_and_files_written(tmp_path, capsys):
    _fake_run(tmp_path / "0", ["strategy=target_only", "seed=0"], {KEY: 0.1}, per_user=[0.1, 0.2])
    _fake_run(tmp_path / "1", ["strategy=joint", "seed=0"], {KEY: 0.2}, per_user=[0.2, 0.2])
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "error.json").write_text(json.dumps({"message": "config key 'strategy.lam' must be >= 0"}))
    out = tmp_path / "report"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "failed jobs (1):" in printed and "strategy.lam" in printed
    assert {p.name for p in out.iterdir()} == {"compare.md", "compare.csv", "compare.json", "gain.png"}
    assert "+33.3%" in (out / "compare.md").read_text()  # 0.2 / 0.15 - 1
    with pytest.raises(SystemExit) as stop:  # the gain is measured on a test key, never a validation one
        main([str(tmp_path), "--metric", "val/target/ndcg@10"])
    assert stop.value.code == 2 and "must be a test metric" in capsys.readouterr().err


def test_compare_runs_from_python_gives_the_cli_rows(tmp_path, capsys):
    from translearn.compare import compare_runs

    _fake_run(tmp_path / "0", ["strategy=target_only", "seed=0"], {KEY: 0.1}, per_user=[0.1, 0.2])
    _fake_run(tmp_path / "1", ["strategy=joint", "seed=0"], {KEY: 0.2}, per_user=[0.2, 0.2])
    rows, failed = compare_runs([tmp_path])
    assert main([str(tmp_path), "--json"]) == 0
    pick = ("row", "mean", "gain", "gain_ci", "verdict", "basis")
    cli = json.loads(capsys.readouterr().out)["rows"]
    assert [{k: r[k] for k in pick} for r in rows] == [{k: r[k] for k in pick} for r in cli] and failed == []
    assert rows[1]["gain"] == pytest.approx(0.2 / 0.15 - 1)


def test_no_runs_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "no metrics.json" in capsys.readouterr().err
