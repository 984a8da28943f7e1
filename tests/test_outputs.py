"""translearn-features, translearn-recommend and translearn-probe end to end on tiny real runs (an MF run and
a SASRec run, trained once for the module), checked against the checkpoint's weights and by-hand rankings;
plus the latest-history query, attribute labels and the probe on hand-made vectors."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import OmegaConf

from translearn.cli import features as features_cli
from translearn.cli import probe as probe_cli
from translearn.cli import recommend as recommend_cli
from translearn.cli.config import compose
from translearn.data.history import HistoryIndex
from translearn.data.prepare import prepare
from translearn.data.splits import TRAIN, LeaveOneOut
from translearn.errors import UserError
from translearn.outputs import attribute_labels, fit_probe, load_run, recommend, user_indices
from translearn.outputs.recommend import top_k
from translearn.train import train

TINY = ["data.dataset.num_users=120", "data.dataset.num_items=[50,40]", "data.batch_size=128",
        "data.eval_batch_size=64", "trainer.max_epochs=2", "logger=none"]
SASREC = ["model=sasrec", "model.max_history=8", "model.embedding_dim=16", "model.inner_size=32",
          "data.dataset.sequential=0.9"]


def _train(folder: Path, overrides: list[str]) -> Path:
    """A finished run folder with the ``.hydra/config.yaml`` the console script would save."""
    cfg = compose([*overrides, f"paths.cache_dir={folder.parent / 'cache'}",
                   f"paths.log_dir={folder.parent / 'logs'}"], output_dir=folder)
    train(cfg)
    (folder / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    return folder


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("mf") / "run", TINY)  # joint MF: towers for target and source


@pytest.fixture(scope="module")
def sas_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("sas") / "run", [*TINY, *SASREC, "strategy=target_only"])


def _state(run: Path) -> dict[str, torch.Tensor]:
    ckpt = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    return torch.load(run / ckpt, map_location="cpu", weights_only=True)["state_dict"]


def _cli(main, args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------- features
def test_features_of_an_id_model_are_the_checkpoint_tables_with_raw_ids(mf_run, tmp_path, capsys) -> None:
    code, out, _ = _cli(features_cli.main, [mf_run, "--out", tmp_path / "f"], capsys)
    assert code == 0 and "users: 120 x 64" in out
    f, state = tmp_path / "f", _state(mf_run)
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
    code, out, _ = _cli(features_cli.main, [sas_run, "--out", tmp_path / "f", "--no-progress"], capsys)
    assert code == 0 and "users: none (sequence model" in out
    manifest = json.loads((tmp_path / "f" / "features.json").read_text())
    assert manifest["family"] == "sequence" and manifest["users"] is None and "history" in manifest["users_note"]
    assert not (tmp_path / "f" / "users.npy").exists()
    table = _state(sas_run)["model.user_encoder.item_embedding.weight"].numpy()  # token 0 = padding
    np.testing.assert_array_equal(np.load(tmp_path / "f" / "items_target.npy"), table[1:])


def test_features_errors_are_one_line(mf_run, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):  # argparse: --encoder is text or image
        features_cli.main(["--encoder", "all-minilm", "--out", str(tmp_path / "f")])
    assert "invalid choice: 'all-minilm'" in capsys.readouterr().err
    code, _, err = _cli(features_cli.main, [mf_run, "--data", "arts_office", "--out", tmp_path / "f"], capsys)
    assert code == 2 and "--data goes with --encoder" in err
    code, _, err = _cli(features_cli.main, [tmp_path, "--out", tmp_path / "f"], capsys)
    assert code == 2 and "is not a run folder" in err
    code, _, err = _cli(features_cli.main, [mf_run, "--out", tmp_path / "f", "--domain", "office"], capsys)
    assert code == 2 and "no domain 'office'" in err and "target, source" in err
    (tmp_path / "file").write_text("")
    code, _, err = _cli(features_cli.main, [mf_run, "--out", tmp_path / "file"], capsys)
    assert code == 2 and "--out" in err and "is a file" in err


# ------------------------------------------------------------------------------------------ recommend
def _mf_scores(run: Path) -> np.ndarray:
    """[U, I] target scores by hand from the checkpoint: user vector . item vector."""
    state = _state(run)
    return (state["model.user_encoder.weight"] @ state["model.item_encoders.target.weight"].T).numpy()


def _known(prepared, rows: str) -> np.ndarray:
    """[U, I] bool: the target items each user has in the data (rows='all') or in training (rows='train')."""
    inter = prepared.data.domain("target").interactions if rows == "all" else prepared.train("target")
    known = np.zeros((prepared.num_users, prepared.num_items("target")), dtype=bool)
    known[inter.users, inter.items] = True
    return known


def test_recommend_ranks_every_unknown_item_by_score_and_leaves_known_items_out(mf_run, capsys) -> None:
    loaded = load_run(mf_run)
    prepared, scores = loaded.prepared, _mf_scores(mf_run)
    held = prepared.held_out("test")
    u = int(held.users[0])  # a user with a held-out item, so "all" and "train" differ
    raw = str(prepared.data.user_ids[u])
    n = prepared.num_items("target")
    item_ids = prepared.data.domain("target").item_ids.astype(str)
    for exclude in ("all", "train"):
        code, out, _ = _cli(recommend_cli.main, [mf_run, "--users", raw, "--k", n, "--exclude", exclude], capsys)
        assert code == 0
        rows = list(csv.DictReader(io.StringIO(out)))
        known = _known(prepared, exclude)[u]
        candidates = np.flatnonzero(~known)
        expected = candidates[np.argsort(-scores[u, candidates], kind="stable")]
        assert [r["item_id"] for r in rows] == item_ids[expected].tolist()  # every candidate, best first
        assert [int(r["rank"]) for r in rows] == list(range(1, len(expected) + 1))
        assert {r["user_id"] for r in rows} == {raw}
        np.testing.assert_allclose([float(r["score"]) for r in rows], scores[u, expected], rtol=1e-5)
    test_item = str(item_ids[held.items[0]])
    assert test_item in [r["item_id"] for r in rows]  # --exclude train: the held-out item can come back


def test_recommend_all_users_in_batches_is_top1_argmax_of_score_all(mf_run, tmp_path, capsys) -> None:
    loaded = load_run(mf_run)
    prepared = loaded.prepared
    out = tmp_path / "recs.json"
    code, _, err = _cli(recommend_cli.main, [mf_run, "--all-users", "--k", 5, "--format", "json", "--out", out,
                                            "--batch-size", 7], capsys)
    assert code == 0 and f"{prepared.num_users} users" in err
    lists = json.loads(out.read_text())
    assert lists["k"] == 5 and lists["exclude"] == "all" and lists["domain"] == "target"
    assert [r["user_id"] for r in lists["users"]] == prepared.data.user_ids.astype(str).tolist()
    with torch.no_grad():
        scores = loaded.strategy.score_all(torch.arange(prepared.num_users)).numpy()
    masked = np.where(_known(prepared, "all"), -np.inf, scores)
    item_ids = prepared.data.domain("target").item_ids.astype(str)
    assert [r["items"][0] for r in lists["users"]] == item_ids[masked.argmax(axis=1)].tolist()
    known = _known(prepared, "all")
    index = {raw: i for i, raw in enumerate(item_ids)}
    for u, r in enumerate(lists["users"]):
        assert len(r["items"]) == 5 and not known[u, [index[i] for i in r["items"]]].any()
        assert r["scores"] == sorted(r["scores"], reverse=True)
    again = recommend(loaded, None, k=5, batch_size=1024)
    assert [[item_ids[i] for i in row] for row in again.items] == [r["items"] for r in lists["users"]]


def test_a_short_candidate_list_is_not_padded(mf_run) -> None:
    loaded = load_run(mf_run)
    n = loaded.prepared.num_items("target")
    known = _known(loaded.prepared, "all")
    recs = recommend(loaded, np.array([0, 1]), k=n + 5)
    assert recs.items.shape == (2, n)
    assert [int((row >= 0).sum()) for row in recs.items] == [int(n - known[0].sum()), int(n - known[1].sum())]
    assert len(recs.rows()) == int(2 * n - known[:2].sum())


def test_recommend_from_a_source_domain(mf_run, capsys) -> None:
    loaded = load_run(mf_run)
    prepared = loaded.prepared
    state = _state(mf_run)
    scores = (state["model.user_encoder.weight"] @ state["model.item_encoders.source.weight"].T).numpy()
    inter = prepared.data.domain("source").interactions
    u = int(inter.users[0])
    known = np.zeros(prepared.num_items("source"), dtype=bool)
    known[inter.items[inter.users == u]] = True
    recs = recommend(loaded, np.array([u]), k=3, domain="source")
    assert recs.items[0].tolist() == np.argsort(-np.where(known, -np.inf, scores[u]), kind="stable")[:3].tolist()


def test_top_k_is_a_stable_descending_sort_with_ties_and_minus_infinity() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(1, 40, (1,), generator=g))
        k = int(torch.randint(1, n + 1, (1,), generator=g))
        scores = torch.randint(0, 4, (5, n), generator=g).float()  # many ties
        scores[torch.rand(5, n, generator=g) < 0.3] = float("-inf")  # excluded items
        assert torch.equal(top_k(scores, k), torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k])


def test_recommend_errors_name_the_option(mf_run, tmp_path, capsys) -> None:
    code, _, err = _cli(recommend_cli.main, [mf_run, "--users", "0", "nobody", "--k", 3], capsys)
    assert code == 2 and err.count("\n") == 1 and "--users: unknown user id(s) 'nobody': not in" in err
    code, _, err = _cli(recommend_cli.main, [mf_run, "--users", "0", "--k", 0], capsys)
    assert code == 2 and "--k must be >= 1" in err
    code, _, err = _cli(recommend_cli.main, [mf_run, "--users", "0", "--domain", "nope"], capsys)
    assert code == 2 and "--domain" in err and "'nope'" in err
    code, _, err = _cli(recommend_cli.main, [mf_run, "--users", "0", "--out", tmp_path], capsys)
    assert code == 2 and "--out" in err and "folder" in err
    with pytest.raises(UserError, match="'ghost'"):
        user_indices(load_run(mf_run).prepared, ["ghost"])


def test_a_sequence_model_recommends_from_the_users_latest_history(sas_run, capsys) -> None:
    loaded = load_run(sas_run)
    prepared, model = loaded.prepared, loaded.model
    inter = prepared.data.domain("target").interactions
    max_len = model.needs_history
    users = np.unique(prepared.held_out("test").users)[:4]
    recs = recommend(loaded, users, k=3)
    recs_train = recommend(loaded, users, k=3, exclude="train")
    for b, u in enumerate(users):
        mine = np.flatnonzero(inter.users == u)
        for rows, got in (("all", recs), ("train", recs_train)):
            if rows == "train":
                mine = mine[prepared.roles[mine] == TRAIN]
            latest = inter.items[mine[np.argsort(inter.order[mine], kind="stable")]][-max_len:]  # by hand
            query = {"users": torch.tensor([u]), "history": torch.from_numpy(latest + 1)[None],
                     "history_domain": torch.zeros(1, len(latest), dtype=torch.long),
                     "history_len": torch.tensor([len(latest)])}
            with torch.no_grad():
                scores = model.score_all("target", query)[0].numpy()
            known = np.zeros(len(scores), dtype=bool)
            known[inter.items[mine]] = True
            assert got.items[b, 0] == int(np.argmax(np.where(known, -np.inf, scores)))
            np.testing.assert_allclose(got.scores[b, 0], scores[got.items[b, 0]], rtol=1e-5)
            assert not known[got.items[b]].any()


def test_recommend_module_entry_point_runs(mf_run, tmp_path, monkeypatch, capfd) -> None:
    # `python -m translearn.cli.recommend ...`, run in this process: the module's __main__ block and exit status.
    import runpy

    monkeypatch.setattr("sys.argv", ["recommend", str(mf_run), "--users", "3", "--k", "2"])
    monkeypatch.delitem(sys.modules, "translearn.cli.recommend")  # run_module runs a fresh copy as __main__
    with pytest.raises(SystemExit) as done:
        runpy.run_module("translearn.cli.recommend", run_name="__main__")
    out, err = capfd.readouterr()
    assert done.value.code == 0, err[-2000:]
    lines = out.splitlines()
    assert lines[0] == "user_id,rank,item_id,score" and len(lines) == 3
    assert [line.split(",")[1] for line in lines[1:]] == ["1", "2"]
    assert float(lines[1].split(",")[3]) >= float(lines[2].split(",")[3])  # ranked by score


# ------------------------------------------------------------------------------- latest history queries
@pytest.fixture
def interleaved(make_data, static_source):
    """u1: target x1 y3 z5 w7 (LOO: z valid, w test), source a2 b5 c6 d7 e8 (b ties z, d ties w)."""
    data = make_data(
        s=dict(users=["u1"] * 5, items=["a", "b", "c", "d", "e"], order=[2, 5, 6, 7, 8]),
        t=dict(users=["u1"] * 4 + ["u2"] * 2, items=["x", "y", "z", "w", "x", "y"], order=[1, 3, 5, 7, 1, 2]),
    )
    return prepare(static_source(data, "latest"), target="t", sources=["s"], split=LeaveOneOut())


def test_latest_queries_read_every_row_or_training_rows_in_history_order(interleaved) -> None:
    u1 = int(np.flatnonzero(interleaved.data.user_ids == "u1")[0])

    def names(index: HistoryIndex, rows: str, max_len: int = 50) -> list[str]:
        q = index.latest_queries(np.array([u1]), max_len, rows=rows)
        out = []
        for tok in q.history[0, : q.lengths[0]].tolist():
            d = next(d for d in reversed(index.domains) if tok > index.offsets[d])
            out.append(str(interleaved.data.domain(d).item_ids[tok - index.offsets[d] - 1]))
        return out

    both = HistoryIndex(interleaved, scope="all")
    assert names(both, "all") == list("xayzbcwde")  # at a tie the target row comes first
    assert names(both, "train") == list("xaybcde")  # valid z and test w left out
    assert names(both, "all", max_len=3) == list("wde")
    target = HistoryIndex(interleaved, scope="target")
    assert names(target, "all") == list("xyzw") and names(target, "train") == list("xy")
    batch = both.latest_queries(np.array([u1, u1]), 4).batch(np.array([1]))
    assert batch["history"].shape == (1, 4) and batch["history_len"].tolist() == [4]


# ------------------------------------------------------------------------------------------------ probe
def test_attribute_labels_by_word_or_regex() -> None:
    arts = np.array(["arts crafts sewing crafting picture framing", "arts crafts sewing sewing quilting",
                     "arts", "", None], dtype=object)
    assert attribute_labels(arts, word=0).tolist() == ["arts", "arts", "arts", None, None]
    assert attribute_labels(arts, word=3).tolist() == ["crafting", "sewing", None, None, None]
    assert attribute_labels(np.array(["a|b, c d"]), word=2).tolist() == ["c"]
    assert attribute_labels(arts, regex=r"sewing (\w+)").tolist() == ["crafting", "sewing", None, None, None]
    assert attribute_labels(arts, regex=r"qu\w+").tolist() == [None, "quilting", None, None, None]
    with pytest.raises(UserError, match="exactly one"):
        attribute_labels(arts, word=1, regex="x")
    with pytest.raises(UserError, match="--regex"):
        attribute_labels(arts, regex="(")


def _labelled(counts: dict[str, int]) -> np.ndarray:
    return np.asarray([c for c, n in counts.items() for _ in range(n)], dtype=object)


def test_probe_finds_an_attribute_the_vectors_carry_and_reports_the_baseline() -> None:
    labels = _labelled({"sewing": 30, "painting": 20, "beading": 10, "rare": 3})
    labels = np.concatenate([labels, [None, None]])
    rng = np.random.default_rng(0)
    code = {"sewing": 0, "painting": 1, "beading": 2, "rare": 3}
    carry = np.stack([np.eye(8)[code[c]] * 2.0 if c else np.zeros(8) for c in labels]) + rng.normal(0, 0.3, (65, 8))
    result = fit_probe(carry, labels, min_count=5, test_fraction=0.2, seed=1)
    assert result["classes"] == 3 and result["dropped_classes"] == 1 and result["dropped_items"] == 3
    assert result["items_without_value"] == 2 and result["items"] == 65
    assert result["test_items"] == 6 + 4 + 2 and result["train_items"] == 24 + 16 + 8  # stratified, per class
    assert result["majority_baseline"] == pytest.approx(6 / 12) and result["majority_class"] == "sewing"
    assert result["accuracy"] == 1.0 and result["balanced_accuracy"] == 1.0
    assert result["class_counts"] == {"sewing": 30, "painting": 20, "beading": 10}
    noise = fit_probe(rng.normal(size=(65, 8)), labels, min_count=5, test_fraction=0.2, seed=1)
    assert noise["accuracy"] < 1.0 and noise["test_items"] == 12  # same split, nothing to find


def test_probe_refuses_a_constant_attribute_and_bad_settings() -> None:
    vectors = np.zeros((20, 4))
    with pytest.raises(UserError, match="is constant: every item with a value has 'arts'"):
        fit_probe(vectors, _labelled({"arts": 20}))
    with pytest.raises(UserError, match=r"1 class\(es\) with >= 10 items"):
        fit_probe(vectors, _labelled({"a": 15, "b": 5}))
    with pytest.raises(UserError, match="--min-count"):
        fit_probe(vectors, _labelled({"a": 10, "b": 10}), min_count=1)


def test_probe_cli_on_a_features_folder_with_vectors_that_carry_the_label(mf_run, tmp_path, capsys) -> None:
    """Labels: the first letter of each target item's text (--regex); the features folder's vectors are
    replaced by hand-made ones that encode that letter, so the probe must find it."""
    assert _cli(features_cli.main, [mf_run, "--out", tmp_path / "f"], capsys)[0] == 0
    prepared = load_run(mf_run).prepared
    letters = attribute_labels(prepared.data.domain("target").item_text, regex=r"^(\w)")
    alphabet = sorted(set(letters.tolist()))
    rng = np.random.default_rng(0)
    hand = np.stack([np.eye(len(alphabet))[alphabet.index(c)] for c in letters]) + rng.normal(0, 0.05, (len(letters),
                                                                                                      len(alphabet)))
    np.save(tmp_path / "f" / "items_target.npy", hand.astype(np.float32))
    args = [tmp_path / "f", "--attribute", "text", "--regex", r"^(\w)", "--min-count", 3, "--out", tmp_path / "p.json"]
    code, out, _ = _cli(probe_cli.main, args, capsys)
    assert code == 0 and "accuracy 1.0000" in out and "majority baseline" in out
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["accuracy"] == 1.0 > result["majority_baseline"] and result["classes"] >= 2
    assert result["features"] == str(tmp_path / "f") and result["domain"] == "target"
    code, out, _ = _cli(probe_cli.main, [mf_run, "--attribute", "text", "--regex", r"^(\w)", "--min-count", 3,
                                         "--json"], capsys)  # the run's own (trained) vectors
    trained = json.loads(out)
    assert code == 0 and trained["classes"] == result["classes"] and trained["test_items"] == result["test_items"]
    assert 0.0 <= trained["accuracy"] <= 1.0 and trained["family"] == "id"


def test_probe_cli_errors(mf_run, tmp_path, capsys) -> None:
    code, _, err = _cli(probe_cli.main, [mf_run, "--attribute", "attributes", "--word", 0], capsys)
    assert code == 2 and "--attribute attributes --word 0 is constant" in err and "'target'" in err
    code, _, err = _cli(probe_cli.main, [mf_run, "--attribute", "attributes", "--word", 9], capsys)
    assert code == 2 and "no value for any" in err


# ----------------------------------------------------------------------------------------------- --device
def test_the_tools_score_on_the_device_given(mf_run, tmp_path, capsys) -> None:
    """--device cpu (what the default resolves to without a GPU, tests/test_evaluation.py) gives the default's
    output; translearn-eval runs training's own evaluator there and reproduces the run's test metrics."""
    from translearn.cli import evaluate as evaluate_cli

    loaded = load_run(mf_run, device="cpu")
    assert loaded.device == torch.device("cpu") and loaded.model.user_encoder.weight.device.type == "cpu"
    raw = str(loaded.prepared.data.user_ids[0])
    default = _cli(recommend_cli.main, [mf_run, "--users", raw], capsys)
    assert default[0] == 0 and _cli(recommend_cli.main, [mf_run, "--users", raw, "--device", "cpu"], capsys) == default
    assert _cli(features_cli.main, [mf_run, "--out", tmp_path / "f", "--device", "cpu"], capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "f" / "users.npy"), _state(mf_run)["model.user_encoder.weight"])
    code, _, _ = _cli(evaluate_cli.main, [mf_run, "--split", "test", "--device", "cpu", "--out", tmp_path / "e.json"],
                      capsys)
    summary, again = json.loads((mf_run / "metrics.json").read_text()), json.loads((tmp_path / "e.json").read_text())
    tested = {k: v for k, v in summary.items() if k.startswith("test/")}
    assert code == 0 and tested and {k: again[k] for k in tested} == pytest.approx(tested, rel=1e-6)


@pytest.mark.parametrize("main", [features_cli.main, recommend_cli.main, probe_cli.main])
def test_help_shows_the_examples(main, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "outputs/runs/<time>" in capsys.readouterr().out
