"""translearn-features on the tiny MF and SASRec runs (conftest ``mf_run``, ``sas_run``): the exported tables are
the checkpoint's, with raw ids; its errors are one line. (``--encoder``, no run: test_outputs_encoder.py.)"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import call_main, checkpoint_state

from translearn.cli import features as features_cli
from translearn.outputs import load_run


def test_features_of_an_id_model_are_the_checkpoint_tables_with_raw_ids(mf_run, tmp_path, capsys) -> None:
    code, out, _ = call_main(features_cli.main, [mf_run, "--out", tmp_path / "f"], capsys)
    assert code == 0 and "users: 120 x 64" in out
    f, state = tmp_path / "f", checkpoint_state(mf_run)
    prepared = load_run(mf_run).prepared
    manifest = json.loads((f / "features.json").read_text())
    assert manifest["family"] == "id" and manifest["head"] == "DotHead" and manifest["strategy"] == "Joint"
    assert set(manifest["domains"]) == {"target", "source"}
    for domain in ("target", "source"):
        vectors = np.load(f / f"items_{domain}.npy")
        weights = state[f"model.item_encoders.{domain}.weight"].numpy()
        assert vectors.shape == (prepared.num_items(domain), 64) == weights.shape
        np.testing.assert_array_equal(vectors, weights)
        table = pq.read_table(f / f"items_{domain}.parquet").to_pandas()
        assert table["item_id"].tolist() == prepared.data.domain(domain).item_ids.astype(str).tolist()
        assert table["index"].tolist() == list(range(len(vectors)))
        np.testing.assert_array_equal(np.stack(table["vector"].to_numpy()), vectors)
        assert manifest["domains"][domain] == {"items": len(vectors), "dim": 64, "npy": f"items_{domain}.npy",
                                               "parquet": f"items_{domain}.parquet"}
    np.testing.assert_array_equal(np.load(f / "users.npy"), state["model.user_encoder.weight"].numpy())
    users = pq.read_table(f / "users.parquet").to_pandas()
    assert users["user_id"].tolist() == prepared.data.user_ids.astype(str).tolist()
    assert not list(f.glob(".tmp-*"))


def test_a_sequence_model_exports_its_tied_item_table_and_says_it_has_no_user_vectors(sas_run, tmp_path,
                                                                                      capsys) -> None:
    code, out, _ = call_main(features_cli.main, [sas_run, "--out", tmp_path / "f", "--no-progress"], capsys)
    assert code == 0 and "users: none (sequence model" in out
    manifest = json.loads((tmp_path / "f" / "features.json").read_text())
    assert manifest["family"] == "sequence" and manifest["users"] is None and "history" in manifest["users_note"]
    assert not (tmp_path / "f" / "users.npy").exists()
    table = checkpoint_state(sas_run)["model.user_encoder.item_embedding.weight"].numpy()  # token 0 = padding
    np.testing.assert_array_equal(np.load(tmp_path / "f" / "items_target.npy"), table[1:])


def test_features_errors_are_one_line(mf_run, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):  # argparse: --encoder is text or image
        features_cli.main(["--encoder", "all-minilm", "--out", str(tmp_path / "f")])
    assert "invalid choice: 'all-minilm'" in capsys.readouterr().err
    code, _, err = call_main(features_cli.main, [mf_run, "--data", "arts_office", "--out", tmp_path / "f"], capsys)
    assert code == 2 and "--data goes with --encoder" in err
    code, _, err = call_main(features_cli.main, [tmp_path, "--out", tmp_path / "f"], capsys)
    assert code == 2 and "is not a run folder" in err
    code, _, err = call_main(features_cli.main, [mf_run, "--out", tmp_path / "f", "--domain", "office"], capsys)
    assert code == 2 and "no domain 'office'" in err and "target, source" in err
    (tmp_path / "file").write_text("")
    code, _, err = call_main(features_cli.main, [mf_run, "--out", tmp_path / "file"], capsys)
    assert code == 2 and "--out" in err and "is a file" in err
