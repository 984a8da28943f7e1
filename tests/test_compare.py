"""translearn-compare groups runs by overrides (minus seed) and reports mean and sample std."""

from __future__ import annotations

import json

from translearn.cli.compare import main


def _fake_run(folder, overrides, metrics):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("\n".join(f"- {o}" for o in overrides) + "\n")
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_mean_and_spread_over_seeds(tmp_path, capsys):
    _fake_run(tmp_path / "0", ["strategy=joint", "seed=0"], {"seed": 0, "test/target/ndcg@10": 0.10})
    _fake_run(tmp_path / "1", ["strategy=joint", "seed=1"], {"seed": 1, "test/target/ndcg@10": 0.14})
    _fake_run(tmp_path / "2", ["strategy=target_only", "seed=0"], {"seed": 0, "test/target/ndcg@10": 0.05})
    assert main([str(tmp_path), "--metrics", "test/target/ndcg@10", "--json"]) == 0
    rows = {r["runs"]: r for r in json.loads(capsys.readouterr().out)}
    joint = rows["strategy=joint"]
    assert joint["n"] == 2 and joint["seeds"] == [0, 1]
    mean, std = joint["test/target/ndcg@10"]
    assert abs(mean - 0.12) < 1e-12 and abs(std - 0.028284271247461905) < 1e-12  # sqrt(2 * 0.02**2 / 1)
    assert rows["strategy=target_only"]["test/target/ndcg@10"] == [0.05, 0.0]


def test_no_runs_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "no metrics.json" in capsys.readouterr().err
