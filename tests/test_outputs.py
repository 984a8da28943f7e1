"""The output tools together (translearn-features, translearn-recommend, translearn-probe) on the tiny MF run
(conftest ``mf_run``): the device they score on, and their help. Each tool's own tests: test_outputs_features.py,
test_outputs_recommend.py, test_outputs_probe.py, test_outputs_encoder.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import call_main, checkpoint_state

from translearn.cli import features as features_cli
from translearn.cli import probe as probe_cli
from translearn.cli import recommend as recommend_cli
from translearn.outputs import load_run


def test_the_tools_score_on_the_device_given(mf_run, tmp_path, capsys) -> None:
    """--device cpu (what the default resolves to without a GPU, tests/test_evaluation.py) gives the default's
    output; translearn-eval runs training's own evaluator there and reproduces the run's test metrics."""
    from translearn.cli import evaluate as evaluate_cli

    loaded = load_run(mf_run, device="cpu")
    assert loaded.device == torch.device("cpu") and loaded.model.user_encoder.weight.device.type == "cpu"
    raw = str(loaded.prepared.data.user_ids[0])
    default = call_main(recommend_cli.main, [mf_run, "--users", raw], capsys)
    on_cpu = call_main(recommend_cli.main, [mf_run, "--users", raw, "--device", "cpu"], capsys)
    assert default[0] == 0 and on_cpu == default
    assert call_main(features_cli.main, [mf_run, "--out", tmp_path / "f", "--device", "cpu"], capsys)[0] == 0
    users = checkpoint_state(mf_run)["model.user_encoder.weight"]
    np.testing.assert_array_equal(np.load(tmp_path / "f" / "users.npy"), users)
    code, _, _ = call_main(evaluate_cli.main, [mf_run, "--split", "test", "--device", "cpu", "--out",
                                               tmp_path / "e.json"], capsys)
    summary, again = json.loads((mf_run / "metrics.json").read_text()), json.loads((tmp_path / "e.json").read_text())
    tested = {k: v for k, v in summary.items() if k.startswith("test/")}
    assert code == 0 and tested and {k: again[k] for k in tested} == pytest.approx(tested, rel=1e-6)


@pytest.mark.parametrize("main", [features_cli.main, recommend_cli.main, probe_cli.main])
def test_help_shows_the_examples(main, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "outputs/runs/<time>" in capsys.readouterr().out
