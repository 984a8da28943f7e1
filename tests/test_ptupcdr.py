"""PTUPCDR: the meta network by hand, the task-oriented loss, cold-start users kept out of training, a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from translearn.build import build_data, build_datamodule, build_model, build_strategy
from translearn.cli.config import compose
from translearn.data.facts import DataFacts
from translearn.data.schema import Interactions
from translearn.errors import ConfigError
from translearn.losses import BPRLoss
from translearn.models import matrix_factorization
from translearn.models.meta_bridge import PAD, MetaBridge, latest_items
from translearn.strategies import PTUPCDR

ITEMS = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]  # source item vectors e_0, e_1, e_2
DECODER_OUT = [[1.0, 0.0], [0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]  # [D_s * D_t, meta_dim]
DECODER_BIAS = [0.1, -0.2, 0.0, 0.3]


def _hand_bridge(history: list[list[int]]) -> MetaBridge:
    """D_s = D_t = meta_dim = 2: attention logit relu(I e) . [1, 1]; decoder relu(I p) -> DECODER_OUT, bias."""
    bridge = MetaBridge(torch.tensor(history), torch.tensor(ITEMS), out_dim=2, meta_dim=2)
    with torch.no_grad():
        for layer in (bridge.attention[0], bridge.decoder[0]):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
        bridge.attention[2].weight.fill_(1.0)
        bridge.decoder[2].weight.copy_(torch.tensor(DECODER_OUT))
        bridge.decoder[2].bias.copy_(torch.tensor(DECODER_BIAS))
    return bridge


def _expected_matrix(p: list[float]) -> list[list[float]]:
    hidden = [max(x, 0.0) for x in p]
    rows = zip(DECODER_OUT, DECODER_BIAS, strict=True)
    flat = [sum(w * h for w, h in zip(row, hidden, strict=True)) + b for row, b in rows]
    return [flat[0:2], flat[2:4]]


def test_meta_bridge_by_hand():
    bridge = _hand_bridge([[0, 1], [2, PAD], [PAD, PAD]])
    # user 0: logits relu(e_0).sum() = 1, relu(e_1).sum() = 2 -> softmax weights; user 1: one item, weight 1
    a0, a1 = 1 / (1 + math.e), math.e / (1 + math.e)
    p = [[a0 * 1.0 + a1 * 0.0, a0 * 0.0 + a1 * 2.0], [1.0, 1.0], [0.0, 0.0]]  # user 2: empty history -> 0
    users = torch.tensor([0, 1, 2])
    assert bridge.characteristic(users).tolist() == [pytest.approx(row, rel=1e-6) for row in p]
    matrices = bridge.bridge(users)
    for u in range(3):
        assert matrices[u].tolist() == [pytest.approx(row, rel=1e-6) for row in _expected_matrix(p[u])]
    source = torch.tensor([[1.0, -1.0], [2.0, 0.5], [1.0, 1.0]])
    mapped = bridge(source, users)
    for u in range(3):  # the row vector s_u times W_u
        w = _expected_matrix(p[u])
        s = source[u].tolist()
        assert mapped[u].tolist() == pytest.approx([s[0] * w[0][j] + s[1] * w[1][j] for j in range(2)], rel=1e-6)


def test_latest_items_keeps_each_users_latest_rows_oldest_first():
    users = np.array([0, 0, 0, 1, 0, 0])
    items = np.array([5, 6, 7, 8, 9, 4])
    order = np.array([3.0, 1.0, 2.0, 0.0, 4.0, 4.0])  # the last two tie: the later row is the later one
    out = latest_items(users, items, order, num_users=3, max_len=3)
    assert out.tolist() == [[5, 9, 4], [8, PAD, PAD], [PAD, PAD, PAD]]
    assert latest_items(users, items, None, 3, 2).tolist() == [[9, 4], [8, PAD], [PAD, PAD]]


def _mf(users: list[list[float]], items: dict[str, list[list[float]]]) -> torch.nn.Module:
    """2-d MF with hand-set vectors."""
    model = matrix_factorization(len(users), {d: len(v) for d, v in items.items()}, embedding_dim=2)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.tensor(users))
        for d, v in items.items():
            model.item_encoders[d].weight.copy_(torch.tensor(v))
    return model


def _facts(has_source: list[bool], has_target: list[bool], source_rows: Interactions) -> DataFacts:
    return DataFacts("t", ("s",), {"s": np.array(has_source), "t": np.array(has_target)},
                     {"s": int(np.sum(np.array(has_source) & np.array(has_target)))}, np.zeros(3, dtype=np.int64),
                     {"s": False, "t": False}, train_rows=lambda d: source_rows)


def _bpr(pos: float, neg: float) -> float:
    return math.log1p(math.exp(-(pos - neg)))


def test_meta_loss_is_the_task_loss_on_target_rows_of_overlapping_users():
    # Users 0 and 1 have source and target data; user 2 has target rows but no source data; user 3 is cold.
    source_rows = Interactions(np.array([0, 1, 1, 3]), np.array([0, 1, 2, 2]))
    facts = _facts([True, True, False, True], [True, True, True, False], source_rows)
    source = _mf([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [1.0, 1.0]], {"s": ITEMS})
    target = _mf([[3.0, 3.0], [-3.0, 1.0], [1.0, 1.0], [0.0, 0.0]], {"t": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]})
    strategy = PTUPCDR(target, "t", ["s"], source_model=source, meta_dim=2, loss=BPRLoss(), facts=facts,
                       schedule="joint")
    bridge = target.user_encoder.mapper
    assert bridge.history[:, :2].tolist() == [[0, PAD], [1, 2], [PAD, PAD], [2, PAD]]
    with torch.no_grad():  # every user's bridge is [[2, 0], [0, -1]] (the decoder's output is its bias)
        bridge.decoder[2].weight.zero_()
        bridge.decoder[2].bias.copy_(torch.tensor([2.0, 0.0, 0.0, -1.0]))
    batch = {"t": {"users": torch.tensor([0, 1, 2]), "items": torch.tensor([0, 1, 2]),
                   "negatives": torch.tensor([[1], [0], [0]])}}
    out = strategy.compute_loss(batch)
    # bridged vectors: user 0 (1, 0) -> (2, 0), user 1 (0, 2) -> (0, -2); user 2 (no source data) is left out.
    # user 0: pos item 0 scores 2, neg item 1 scores 0; user 1: pos item 1 scores -2, neg item 0 scores 0.
    assert out["loss_meta"].item() == pytest.approx((_bpr(2.0, 0.0) + _bpr(-2.0, 0.0)) / 2, rel=1e-6)
    # the target loss is the plain BPR of the target model's own vectors, all three rows
    loss_t = (_bpr(3.0, 3.0) + _bpr(1.0, -3.0) + _bpr(2.0, 1.0)) / 3
    assert out["loss_t"].item() == pytest.approx(loss_t, rel=1e-6)
    assert out["loss"].item() == pytest.approx(loss_t + out["loss_meta"].item(), rel=1e-6)
    strategy.meta_batch_size = 1  # the first row of a user with source data only
    assert strategy.compute_loss(batch)["loss_meta"].item() == pytest.approx(_bpr(2.0, 0.0), rel=1e-6)
    # Only the meta network learns from loss_meta: the target's vectors are detached in it.
    out["loss_meta"].backward()
    assert target.item_encoders["t"].weight.grad is None or not target.item_encoders["t"].weight.grad.any()
    assert target.user_encoder.own.weight.grad is None or not target.user_encoder.own.weight.grad.any()
    assert bridge.decoder[2].bias.grad.abs().sum() > 0
    # Scoring: users with target data keep their own vector; the cold user 3 gets s_3 @ W = (2, -1).
    assert target.user_encoder(torch.tensor([0, 3])).tolist() == [[3.0, 3.0], [2.0, -1.0]]


def test_refusals_are_one_line():
    rows = Interactions(np.array([0]), np.array([0]))
    facts = _facts([True, True], [True, True], rows)
    source = _mf([[1.0, 0.0], [0.0, 1.0]], {"s": ITEMS})
    with pytest.raises(ValueError, match="one source domain"):
        PTUPCDR(_mf([[0.0, 0.0]] * 2, {"t": ITEMS}), "t", ["s", "s2"], source_model=source, facts=facts)
    with pytest.raises(ValueError, match="history_min_rating"):
        PTUPCDR(_mf([[0.0, 0.0]] * 2, {"t": ITEMS}), "t", ["s"], source_model=source, facts=facts,
                history_min_rating=4)
    with pytest.raises(ValueError, match="source_model"):
        PTUPCDR(_mf([[0.0, 0.0]] * 2, {"t": ITEMS}), "t", ["s"], facts=facts)


def test_cold_start_users_never_contribute_target_rows(tmp_path, run_overrides):
    cfg = compose([*run_overrides, "strategy=ptupcdr", "data.split=cold_start", "data.split.holdout_fraction=0.5"],
                  output_dir=tmp_path)
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    model = build_model(cfg, prepared)
    strategy = build_strategy(cfg, prepared, model, for_loading=True)  # an untrained stage of the right shape
    held_out = [prepared.held_out(role) for role in ("valid", "test")]
    cold = np.unique(np.concatenate([rows.users for rows in held_out]))
    assert len(cold) > 0
    encoder = strategy.model.user_encoder
    assert not encoder.has_own[torch.from_numpy(cold)].any()  # scored with the bridged vector
    held = {(u, i) for rows in held_out for u, i in zip(rows.users.tolist(), rows.items.tolist(), strict=True)}
    data = build_datamodule(cfg, prepared, strategy)
    seen_users, seen_pairs = set(), set()
    for batch in data.train_dataloader():
        part = batch[prepared.target]
        seen_users.update(part["users"].tolist())
        seen_pairs.update(zip(part["users"].tolist(), part["items"].tolist(), strict=True))
        strategy.compute_loss(batch)  # the loss runs on these rows and nothing else
    assert seen_users and not seen_users & set(cold.tolist())
    assert not seen_pairs & held
    # A cold user's target row of the embedding never reaches her score: changing it changes nothing.
    users = torch.from_numpy(cold[:4])
    before = strategy.score_all(users)
    with torch.no_grad():
        encoder.own.weight[users] += 5.0
    assert torch.equal(strategy.score_all(users), before)
    # The bridge reads only source items: the history is the source's training rows.
    source = prepared.train(prepared.sources[0])
    u = int(cold[0])
    own = set(source.items[source.users == u].tolist())
    assert set(encoder.mapper.history[u].tolist()) - {PAD} <= own


def _sequential_strategy() -> tuple[PTUPCDR, dict]:
    """Users 0, 1 overlap, user 2 is cold; a target phase of 1 epoch. Returns the strategy and one batch."""
    source_rows = Interactions(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    facts = _facts([True, True, True], [True, True, False], source_rows)
    source = _mf([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], {"s": ITEMS})
    target = _mf([[0.3, 0.1], [-0.2, 0.4], [0.0, 0.0]], {"t": [[0.5, 0.0], [0.0, 0.5], [0.2, 0.3]]})
    strategy = PTUPCDR(target, "t", ["s"], source_model=source, meta_dim=2, loss=BPRLoss(), facts=facts,
                       target_epochs=1, meta_lr=0.1)
    batch = {"t": {"users": torch.tensor([0, 1, 0]), "items": torch.tensor([0, 1, 2]),
                   "negatives": torch.tensor([[1], [0], [1]])}}
    return strategy, batch


def _one_step(strategy: PTUPCDR, batch: dict) -> dict[str, torch.Tensor]:
    optimizer = torch.optim.Adam(strategy.param_groups(), lr=0.1)
    optimizer.zero_grad(set_to_none=True)
    out = strategy.compute_loss(batch)
    out["loss"].backward()
    optimizer.step()
    return out


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if not torch.equal(before[name], p.detach())}


def test_sequential_schedule_trains_the_target_then_only_the_meta_network(monkeypatch):
    strategy, batch = _sequential_strategy()
    assert strategy.schedule == "sequential" and strategy.selection_from_epoch == 1
    mapper = strategy.model.user_encoder.mapper
    target_names = {n for n, _ in strategy.model.named_parameters() if not n.startswith("user_encoder.mapper.")}
    # Target phase (epoch 0): loss_t alone; the target model learns, the meta network does not.
    monkeypatch.setattr(PTUPCDR, "current_epoch", property(lambda self: 0))
    before = _weights(strategy.model)
    out = _one_step(strategy, batch)
    assert set(out) == {"loss", "loss_t"}
    changed = _changed(before, strategy.model)
    assert changed and changed <= target_names
    # Meta phase (epoch 1): loss_meta alone; every target weight stays as it is, the meta network learns.
    monkeypatch.setattr(PTUPCDR, "current_epoch", property(lambda self: 1))
    before, before_meta = _weights(strategy.model), _weights(mapper)
    for _ in range(3):
        out = _one_step(strategy, batch)
        assert set(out) == {"loss", "loss_meta"}
    changed = _changed(before, strategy.model)
    assert changed and not changed & target_names
    assert _changed(before_meta, mapper)
    # the meta phase's loss is the task loss of the bridged vectors against the (fixed) target items
    loss = strategy.compute_loss(batch)["loss"]
    assert loss.item() == pytest.approx(strategy.meta_loss(batch["t"]).item(), rel=1e-6)


def test_schedule_refusals_name_the_config_key():
    rows = Interactions(np.array([0]), np.array([0]))
    facts = _facts([True, True], [True, True], rows)
    source = _mf([[1.0, 0.0], [0.0, 1.0]], {"s": ITEMS})
    with pytest.raises(ConfigError, match="strategy.schedule"):
        PTUPCDR(_mf([[0.0, 0.0]] * 2, {"t": ITEMS}), "t", ["s"], source_model=source, facts=facts, schedule="x")
    with pytest.raises(ConfigError, match="strategy.target_epochs"):
        PTUPCDR(_mf([[0.0, 0.0]] * 2, {"t": ITEMS}), "t", ["s"], source_model=source, facts=facts, target_epochs=0)


def _logged(run) -> list[dict[str, str]]:
    import csv

    with next(run.rglob("metrics.csv")).open() as f:
        return list(csv.DictReader(f))


def test_ptupcdr_trains_through_translearn_train(tmp_path, run_overrides, run_cli):
    run = tmp_path / "run"
    done = run_cli("translearn-train", [*run_overrides, "strategy=ptupcdr", "strategy.stage.max_epochs=2",
                                        "strategy.target_epochs=2", "trainer.max_epochs=4",
                                        "data.split=cold_start", "data.split.holdout_fraction=0.5", "logger=csv",
                                        f"hydra.run.dir={run}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["strategy"] == "PTUPCDR"
    assert 0.5 < summary["test/target/auc"] < 1.0  # cold users' items ranked above chance by the bridge
    assert summary["best_epoch"] in (2, 3)  # selected among the meta phase's epochs only
    rows = _logged(run)
    t_epochs = {r["epoch"] for r in rows if r.get("train/loss_t")}
    meta_epochs = {r["epoch"] for r in rows if r.get("train/loss_meta")}
    assert t_epochs == {"0", "1"} and meta_epochs == {"2", "3"}


def test_max_epochs_must_leave_a_meta_phase(tmp_path, run_overrides, run_cli):
    done = run_cli("translearn-train", [*run_overrides, "strategy=ptupcdr", "strategy.stage.max_epochs=1",
                                        "strategy.target_epochs=2", "trainer.max_epochs=2",
                                        "data.split=cold_start", "data.split.holdout_fraction=0.5", "logger=none",
                                        f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert done.returncode != 0
    assert "strategy.target_epochs" in done.stderr
