"""A model is validated during training as it is saved: the checkpoint picked on validation gives, when
loaded again, the score it was picked with. Content item towers cache their full item table; the default
optimiser (fused Adam) updates parameters without bumping their version counter, so the cache must see
optimiser steps, or every validation after the first one reads the first epoch's item table."""

from __future__ import annotations

import csv
import json
import logging
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from test_content_towers import catalog, use_stub_encoder

from translearn.cli.config import compose
from translearn.cli.evaluate import main as evaluate_main
from translearn.losses import BPRLoss
from translearn.models import matrix_factorization
from translearn.train import check_selection, train


@pytest.mark.parametrize("tower", ["text", "id_text"])
@pytest.mark.parametrize("optimiser", [dict(fused=True), dict(foreach=True), dict(foreach=False)])
def test_the_item_table_follows_every_optimiser_step(tower, optimiser):
    torch.manual_seed(0)
    m = matrix_factorization(3, {"t": 4, "s": 5}, embedding_dim=8, items=catalog(), content={"item_tower": tower})
    opt, bpr = torch.optim.Adam(m.parameters(), lr=0.1, **optimiser), BPRLoss()
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([[3], [0], [1]])
    before = None
    for _ in range(3):
        with torch.no_grad():  # evaluation between steps caches the table
            scores = m.score_all("t", users)
            fresh = m.user_encoder(users) @ m.item_encoder("t")._vectors(None).T
        assert torch.allclose(scores, fresh, atol=1e-6)
        assert before is None or not torch.allclose(scores, before)  # the step did change the scores
        before = scores
        opt.zero_grad()
        bpr(*m.score_pos_neg("t", users, pos, neg)).backward()
        opt.step()


def test_a_selection_score_that_does_not_come_back_is_a_warning(caplog):
    checkpoint = SimpleNamespace(best_model_score=torch.tensor(0.05), monitor="val/target/ndcg@10")
    with caplog.at_level(logging.WARNING, logger="translearn.train"):
        check_selection(checkpoint, {"val/target/ndcg@10": 0.05 + 1e-8})
        assert not caplog.records
        check_selection(checkpoint, {"val/target/ndcg@10": 0.0188})
    assert "scored val/target/ndcg@10 = 0.050000 when it was selected but 0.018800" in caplog.text


@pytest.mark.parametrize("tower", ["text", "id_text"])
def test_a_content_mf_run_validates_the_model_it_saves(tmp_path, monkeypatch, caplog, tower):
    use_stub_encoder(monkeypatch)
    out = tmp_path / "run"
    overrides = ["data.dataset.num_users=160", "data.dataset.num_items=[50,40]", "data.batch_size=64",
                 "trainer.max_epochs=4", "optimizer.lr=0.01", f"model.content.item_tower={tower}",
                 "strategy=target_only",
                 f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'logs'}"]
    cfg = compose(overrides, output_dir=out)
    with caplog.at_level(logging.WARNING, logger="translearn.train"):
        summary = train(cfg)
    assert "model selection" not in caplog.text
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    logged = {int(r["epoch"]): float(r["val/target/ndcg@10"]) for r in rows if r.get("val/target/ndcg@10")}
    assert summary["val/target/ndcg@10"] == pytest.approx(logged[summary["best_epoch"]], abs=1e-6)
    # the last epoch, validated during training, against the last checkpoint loaded again
    (out / ".hydra").mkdir()
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    assert evaluate_main([str(out), "--checkpoint", "last", "--split", "valid", "--out", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["val/target/ndcg@10"] == pytest.approx(logged[max(logged)], abs=1e-6)
