"""DTCDR: the combined user vectors (max / mean / concat) and the towers by hand, shared users from the context,
paired batches at training, the refusals, and a run through translearn-train."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from translearn.errors import ConfigError
from translearn.losses import BCELoss
from translearn.models.context import ModelContext
from translearn.models.dtcdr import DTCDR, dtcdr
from translearn.strategies import FineTune, Joint, TargetOnly

SHARED = torch.tensor([True, True, False])  # users 0 and 1 in both domains, user 2 in one


def hand_model(combine: str) -> DTCDR:
    """1-d embeddings: E_t = (1, -2, 0.5), E_s = (3, -1, -4); t items (1, -5), s items (2,)."""
    model = DTCDR(3, {"t": 2, "s": 1}, SHARED, embedding_dim=1, hidden_dims=[1], dropout=0.0, combine=combine)
    with torch.no_grad():
        model.user_encoder.tables["t"].weight.copy_(torch.tensor([[1.0], [-2.0], [0.5]]))
        model.user_encoder.tables["s"].weight.copy_(torch.tensor([[3.0], [-1.0], [-4.0]]))
        model.item_encoder("t").weight.copy_(torch.tensor([[1.0], [-5.0]]))
        model.item_encoder("s").weight.copy_(torch.tensor([[2.0]]))
    return model


def _set_tower(model: DTCDR, domain: str, weight: list[float], bias: float) -> None:
    """Tower = relu(weight . [c_u, v_i] + bias), output layer the identity (1 * a + 0)."""
    hidden, _, _, out = model.head[domain].mlp
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor([weight]))
        hidden.bias.fill_(bias)
        out.weight.fill_(1.0)
        out.bias.fill_(0.0)


@pytest.mark.parametrize(("combine", "t_vectors", "s_vectors"), [
    ("max", [[3.0], [-1.0], [0.5]], [[3.0], [-1.0], [-4.0]]),        # max(1, 3), max(-2, -1); user 2: own row
    ("mean", [[2.0], [-1.5], [0.5]], [[2.0], [-1.5], [-4.0]]),       # (1 + 3) / 2, (-2 - 1) / 2
    ("concat", [[1.0, 3.0], [-2.0, -1.0], [0.5, 0.0]], [[1.0, 3.0], [-2.0, -1.0], [0.0, -4.0]]),  # zeros: no row
])
def test_combined_user_vectors_by_hand(combine, t_vectors, s_vectors):
    model = hand_model(combine)
    users = torch.tensor([0, 1, 2])
    assert model.query_vectors("t", users).tolist() == t_vectors
    assert model.query_vectors("s", users).tolist() == s_vectors
    assert torch.equal(model.user_vectors(users), model.query_vectors("t", users))


def test_towers_and_full_ranking_by_hand():
    """combine=max, tower t = relu(2 c_u + v_i + 0.5): user 0 (c = 3): 7.5, 1.5; user 1 (c = -1): relu(-0.5) = 0,
    relu(-6.5) = 0; user 2 (own 0.5): 2.5, relu(-3.5) = 0. Tower s = relu(c_u - v_i): user 0: 1,
    user 2: relu(-6) = 0."""
    model = hand_model("max")
    _set_tower(model, "t", [2.0, 1.0], 0.5)
    _set_tower(model, "s", [1.0, -1.0], 0.0)
    users = torch.tensor([0, 1, 2])
    expected = torch.tensor([[7.5, 1.5], [0.0, 0.0], [2.5, 0.0]])
    with torch.no_grad():
        assert torch.equal(model.score_all("t", users), expected)
        assert torch.equal(model.score("t", users, torch.tensor([[0, 1]] * 3)), expected)
        assert model.score_all("s", users).tolist() == [[1.0], [0.0], [0.0]]
        pos, neg = model.score_pos_neg("t", users, torch.tensor([1, 0, 0]), torch.tensor([[0], [1], [1]]))
    assert pos.tolist() == [1.5, 0.0, 2.5] and neg.tolist() == [[7.5], [0.0], [0.0]]


def test_max_pooling_trains_the_larger_row_of_a_shared_user_and_both_towers(hand_facts):
    model = hand_model("max")
    strategy = Joint(model, "t", ["s"], loss=BCELoss(), facts=hand_facts(3, 2))
    part = {"users": torch.tensor([0]), "items": torch.tensor([0]), "negatives": torch.tensor([[1]])}
    terms = strategy.compute_loss({"t": part, "s": {**part, "negatives": torch.tensor([[0]])}})
    terms["loss"].backward()
    grad_t, grad_s = model.user_encoder.tables["t"].weight.grad, model.user_encoder.tables["s"].weight.grad
    assert grad_t[0].item() == 0.0 and grad_s[0].item() != 0.0  # user 0: max(1, 3) takes the s row
    assert all(model.head[d].mlp[0].weight.grad is not None for d in ("t", "s"))


def test_factory_reads_the_shared_users_from_the_context():
    ctx = ModelContext(4, {"t": 2, "s": 3}, train_rows={"t": ([0, 1, 3], [0, 1, 1]), "s": ([1, 2, 3], [0, 2, 1])})
    model = dtcdr(4, {"t": 2, "s": 3}, context=ctx)
    assert model.user_encoder.shared.tolist() == [False, True, False, True]
    assert model.reads == {"paired"} and model.preferred_loss == "bce"
    assert "shared" not in model.state_dict()  # rebuilt from the data, never saved
    with pytest.raises(ConfigError, match="which users the domains share"):
        dtcdr(4, {"t": 2, "s": 3})


def test_refusals_in_one_line():
    shared = torch.ones(4, dtype=torch.bool)
    model = DTCDR(4, {"t": 3, "s": 3}, shared)
    assert Joint.refuses_model(model) is None
    for cls in (TargetOnly, FineTune):
        why = cls.refuses_model(model)
        assert why and "\n" not in why
    with pytest.raises(ConfigError, match="config key 'strategy'.*use strategy=joint"):
        DTCDR(4, {"t": 3}, shared)
    with pytest.raises(ConfigError, match="model.combine"):
        DTCDR(4, {"t": 3, "s": 3}, shared, combine="sum")
    with pytest.raises(ConfigError, match="model.dropout"):
        DTCDR(4, {"t": 3, "s": 3}, shared, dropout=1.0)


def test_a_training_step_pairs_the_users(tmp_path):
    from translearn.build import build_datamodule, build_model, build_run_data, build_strategy
    from translearn.cli.config import compose

    cfg = compose(["model=dtcdr", "data.dataset.num_users=60", "data.dataset.num_items=[30,25]",
                   f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path)
    prepared = build_run_data(cfg)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    seen = {}
    real = strategy.model.score_pos_neg

    def spy(domain, query, pos, neg):
        seen[domain] = query["users"]
        return real(domain, query, pos, neg)

    strategy.model.score_pos_neg = spy
    strategy.compute_loss(next(iter(build_datamodule(cfg, prepared, strategy).train_dataloader())))
    assert set(seen) == {"target", "source"} and torch.equal(seen["target"], seen["source"])
    shared = strategy.model.user_encoder.shared
    assert shared[seen["target"]].all() and 0 < int(shared.sum()) <= prepared.num_users


def test_train_cli_runs_dtcdr_with_the_default_strategy(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", ["model=dtcdr", *run_overrides, "trainer.max_epochs=1", "logger=csv",
                                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    ndcg = float(next(line.split()[2] for line in done.stdout.splitlines() if line.startswith("ndcg@10")))
    assert "Joint on synthetic" in done.stdout and np.isfinite(ndcg)


def test_train_cli_refuses_target_only_in_one_line(run_cli, run_overrides, tmp_path):
    refused = run_cli("translearn-train", ["model=dtcdr", "strategy=target_only", *run_overrides,
                                           f"hydra.run.dir={tmp_path / 'refused'}"], cwd=tmp_path)
    assert refused.returncode == 2 and "epoch" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if "config key 'strategy'" in line]
    assert len(errors) == 1 and "use strategy=joint" in errors[0]
