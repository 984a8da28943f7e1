"""translearn-recommend on the tiny MF and SASRec runs (conftest ``mf_run``, ``sas_run``), checked against
rankings by hand from the checkpoint's weights; and the latest-history queries it reads for sequence models."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import call_main, checkpoint_state

from translearn.cli import recommend as recommend_cli
from translearn.data.history import HistoryIndex
from translearn.data.prepare import prepare
from translearn.data.splits import TRAIN, LeaveOneOut
from translearn.errors import UserError
from translearn.outputs import load_run, recommend, user_indices
from translearn.outputs.recommend import top_k


def _mf_scores(run: Path) -> np.ndarray:
    """[U, I] target scores by hand from the checkpoint: user vector . item vector."""
    state = checkpoint_state(run)
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
        code, out, _ = call_main(recommend_cli.main, [mf_run, "--users", raw, "--k", n, "--exclude", exclude], capsys)
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
    code, _, err = call_main(recommend_cli.main, [mf_run, "--all-users", "--k", 5, "--format", "json", "--out", out,
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
    state = checkpoint_state(mf_run)
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
    code, _, err = call_main(recommend_cli.main, [mf_run, "--users", "0", "nobody", "--k", 3], capsys)
    assert code == 2 and err.count("\n") == 1 and "--users: unknown user id(s) 'nobody': not in" in err
    code, _, err = call_main(recommend_cli.main, [mf_run, "--users", "0", "--k", 0], capsys)
    assert code == 2 and "--k must be >= 1" in err
    code, _, err = call_main(recommend_cli.main, [mf_run, "--users", "0", "--domain", "nope"], capsys)
    assert code == 2 and "--domain" in err and "'nope'" in err
    code, _, err = call_main(recommend_cli.main, [mf_run, "--users", "0", "--out", tmp_path], capsys)
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
