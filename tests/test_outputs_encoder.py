"""translearn-features --encoder: a pretrained encoder's item vectors with no trained run (MiniLM on the
synthetic titles, EfficientNet-Lite0 on generated pictures)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from translearn.cli import features as features_cli
from translearn.cli import probe as probe_cli


def _cli(main, args: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


ENCODER_DATA = ["data.dataset.num_users=120", "data.dataset.num_items=[60,200]"]


def test_features_of_the_pretrained_text_encoder_alone(tmp_path, capsys, monkeypatch) -> None:
    """No run: every item of the data through the packaged MiniLM, written like a run's export, read back
    from the feature cache the second time, and probed: the vectors know each title's first word."""
    import translearn.content.text as text_encoders
    from translearn.build import build_data
    from translearn.cli.config import compose
    from translearn.content.catalog import ItemCatalog

    calls = []
    encode = text_encoders.encode_texts
    monkeypatch.setattr(text_encoders, "encode_texts", lambda *a, **k: calls.append(len(a[1])) or encode(*a, **k))
    overrides = [*ENCODER_DATA, f"paths.cache_dir={tmp_path / 'cache'}"]
    code, out, _ = _cli(features_cli.main, ["--encoder", "text", *overrides, "--out", tmp_path / "f"], capsys)
    prepared = build_data(compose(overrides).data, tmp_path / "cache")
    n = {d: prepared.num_items(d) for d in ("source", "target")}
    assert code == 0 and f"target: {n['target']:,} items x 384" in out and calls == [n["source"], n["target"]]
    manifest = json.loads((tmp_path / "f" / "features.json").read_text())
    assert manifest["family"] == "encoder" and manifest["users"] is None and manifest["target"] == "target"
    assert manifest["encoder"]["kind"] == "text" and manifest["encoder"]["template"] == "{text}"
    vectors = np.load(tmp_path / "f" / "items_target.npy")
    assert vectors.shape == (n["target"], 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, ItemCatalog.of(prepared, tmp_path / "cache").text_features("target"))
    ids = pq.read_table(tmp_path / "f" / "items_target.parquet").column("item_id").to_pylist()
    assert ids == prepared.data.domain("target").item_ids.astype(str).tolist()
    assert _cli(features_cli.main, ["--encoder", "text", *overrides, "--domain", "source", "--out", tmp_path / "g"],
                capsys)[0] == 0  # read from the cache: no encoding
    assert calls == [n["source"], n["target"]] and (tmp_path / "g" / "items_source.npy").is_file()
    assert not (tmp_path / "g" / "items_target.npy").exists()
    code, out, _ = _cli(probe_cli.main, [tmp_path / "f", "--attribute", "text", "--word", 0, "--min-count", 3,
                                         "--json"], capsys)
    probe = json.loads(out)
    assert code == 0 and probe["features"] == str(tmp_path / "f") and probe["classes"] >= 2
    assert probe["accuracy"] > probe["majority_baseline"] + 0.2, probe


def test_features_of_the_image_encoder_alone(tmp_path) -> None:
    """--encoder image on generated pictures: the packaged EfficientNet-Lite0's 1280-d features, equal to what
    an image tower would freeze (the catalog's cached features)."""
    from translearn.build import build_data
    from translearn.cli.config import compose
    from translearn.content.catalog import ItemCatalog
    from translearn.outputs.encoder import export_encoder_features

    cfg = compose(["data=synthetic_images", "data.dataset.num_users=80", "data.dataset.num_items=[20,30]",
                   f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path / "f")
    manifest = export_encoder_features(cfg, tmp_path / "f", "image", ["target"])
    assert manifest["encoder"] == {"kind": "image", "encoder": "efficientnet_lite0", "weights": None}
    vectors = np.load(tmp_path / "f" / "items_target.npy")
    prepared = build_data(cfg.data, tmp_path / "cache")
    assert vectors.shape == (prepared.num_items("target"), 1280) and list(manifest["domains"]) == ["target"]
    np.testing.assert_array_equal(vectors, ItemCatalog.of(prepared, tmp_path / "cache").image_features("target"))
    assert np.abs(vectors[0] - vectors[1]).max() > 0  # pictures of different items differ
