"""CoNet: the cross-connected forward pass by hand, evaluation with a tower alone, the joint loss, paired batches
at training, the refusals, and a run through translearn-train."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from translearn.errors import ConfigError
from translearn.losses import BCELoss, CrossEntropyLoss
from translearn.models.conet import CoNet, conet
from translearn.models.heads import MLPHead
from translearn.strategies import FineTune, Joint, TargetOnly


def _set(linear: torch.nn.Linear, weight: list[list[float]], bias: list[float] | None = None) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        if bias is not None:
            linear.bias.copy_(torch.tensor(bias))


def hand_model(reg_weight: float = 0.1) -> CoNet:
    """1-d embeddings, one hidden unit per tower: users e = (1, 2), t items (0.5, -1), s items (3, 1);
    tower t: W_t = [1, 2], b_t = 0.5, output 2 a - 1; tower s: W_s = [-1, 1], b_s = 0, output a + 0.5;
    cross H = [0.5, -0.5]."""
    model = conet(2, {"t": 2, "s": 2}, embedding_dim=1, hidden_dims=[1], reg_weight=reg_weight)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.item_encoder("t").weight.copy_(torch.tensor([[0.5], [-1.0]]))
        model.item_encoder("s").weight.copy_(torch.tensor([[3.0], [1.0]]))
    (w_t, _, _, out_t), (w_s, _, _, out_s) = model.head.towers["t"].mlp, model.head.towers["s"].mlp
    _set(w_t, [[1.0, 2.0]], [0.5])
    _set(out_t, [[2.0]], [-1.0])
    _set(w_s, [[-1.0, 1.0]], [0.0])
    _set(out_s, [[1.0]], [0.5])
    _set(model.head.cross[0], [[0.5, -0.5]])
    return model


PAIRED = {"t": {"users": torch.tensor([1]), "items": torch.tensor([0]), "negatives": torch.tensor([[1]])},
          "s": {"users": torch.tensor([1]), "items": torch.tensor([0]), "negatives": torch.tensor([[1]])}}


def test_cross_connected_forward_by_hand():
    """User 1 (e = 2). Positives: t item 0 (0.5) beside s item 0 (3):
    a_t = relu(2 + 2*0.5 + 0.5 + H [2, 3] = 3.5 - 0.5) = 3 -> 2*3 - 1 = 5;
    a_s = relu(-2 + 3 + H [2, 0.5] = 1 + 0.75) = 1.75 -> 2.25.
    Negatives: t item 1 (-1) beside s item 1 (1):
    a_t = relu(2 - 2 + 0.5 + H [2, 1] = 0.5 + 0.5) = 1 -> 1;  a_s = relu(-2 + 1 + H [2, -1] = -1 + 1.5) = 0.5 -> 1."""
    scores = hand_model().score_paired(PAIRED)
    assert scores["t"][0].tolist() == [5.0] and scores["t"][1].tolist() == [[1.0]]
    assert scores["s"][0].tolist() == [2.25] and scores["s"][1].tolist() == [[1.0]]


def test_evaluation_runs_the_tower_alone_exactly():
    """No other-domain item at evaluation: tower t alone, 2 relu(W_t [e_u, e_i] + 0.5) - 1.
    user 0 (e = 1): item 0 relu(2.5) -> 4, item 1 relu(-0.5) -> -1; user 1 (e = 2): relu(3.5) -> 6, relu(0.5) -> 0."""
    model = hand_model()
    expected = torch.tensor([[4.0, -1.0], [6.0, 0.0]])
    with torch.no_grad():
        assert torch.equal(model.score_all("t", torch.tensor([0, 1])), expected)
        assert torch.equal(model.score("t", torch.tensor([0, 1]), torch.tensor([[0, 1], [0, 1]])), expected)
        pos, neg = model.score_pos_neg("t", torch.tensor([1]), torch.tensor([0]), torch.tensor([[1]]))
    assert pos.tolist() == [6.0] and neg.tolist() == [[0.0]]  # differs from the paired 5 and 1: no cross term


def test_full_ranking_equals_tower_scores_at_every_chunk_size():
    torch.manual_seed(0)
    model = conet(9, {"t": 37, "s": 11}, embedding_dim=8, hidden_dims=[16, 8, 4])
    users = torch.arange(9)
    every = model.item_encoder("t").weight.detach()
    with torch.no_grad():
        reference = model.head.towers["t"].score(model.user_encoder(users), every.unsqueeze(0).expand(9, -1, -1))
        for cells in (1, 10, 100, 1 << 14):
            model.head.towers["t"].chunk_cells = cells
            assert torch.allclose(model.score_all("t", users), reference, atol=1e-6)
    head = MLPHead(4, [3], gmf=True, chunk_cells=5)  # NCF's head takes the same path
    u, v = torch.randn(3, 4), torch.randn(7, 4)
    with torch.no_grad():
        assert torch.allclose(head.score_all(u, v), head.score(u, v.unsqueeze(0).expand(3, -1, -1)), atol=1e-6)


def test_joint_loss_sums_the_domains_log_losses_and_the_cross_penalty(hand_facts):
    """BCE of (5 | 1) on t and (2.25 | 1) on s, each the mean of softplus(-pos) and softplus(neg), plus
    0.1 * ||H||_F = 0.1 * sqrt(0.5) once."""
    model = hand_model(reg_weight=0.1)
    strategy = Joint(model, "t", ["s"], loss=BCELoss(), facts=hand_facts(2, 2))

    def bce(pos: float, neg: float) -> float:
        return (math.log1p(math.exp(-pos)) + math.log1p(math.exp(neg))) / 2

    terms = strategy.compute_loss(PAIRED)
    assert terms["loss_t"].item() == pytest.approx(bce(5.0, 1.0) + 0.1 * math.sqrt(0.5), rel=1e-6)
    assert terms["loss_s"].item() == pytest.approx(bce(2.25, 1.0), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(terms["loss_t"].item() + terms["loss_s"].item())
    terms["loss"].backward()
    assert model.head.cross[0].weight.grad is not None and model.item_encoder("s").weight.grad is not None
    unpaired = {"t": PAIRED["t"], "s": {**PAIRED["s"], "users": torch.tensor([0])}}
    with pytest.raises(ValueError, match="same user"):
        strategy.compute_loss(unpaired)


def test_a_training_step_reads_paired_batches_of_training_rows(tmp_path):
    """Through the real builders: the model's training step sees row b of both domains' parts as one user,
    each (user, item) a training pair of its domain."""
    from translearn.build import build_datamodule, build_model, build_run_data, build_strategy
    from translearn.cli.config import compose

    cfg = compose(["model=conet", "data.dataset.num_users=60", "data.dataset.num_items=[30,25]",
                   f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path)
    prepared = build_run_data(cfg)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    assert isinstance(strategy, Joint) and isinstance(strategy.loss_fn, BCELoss)  # the defaults
    module = build_datamodule(cfg, prepared, strategy)
    seen = []
    real = strategy.model.score_paired
    strategy.model.score_paired = lambda batch: seen.append(batch) or real(batch)
    batch = next(iter(module.train_dataloader()))
    strategy.compute_loss(batch)
    (parts,) = seen
    users = parts["target"]["users"]
    assert len(users) > 0 and torch.equal(parts["source"]["users"], users)
    for domain, part in parts.items():
        train = prepared.train(domain)
        keys = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
        assert set(zip(part["users"].tolist(), part["items"].tolist(), strict=True)) <= keys


def test_strategies_and_losses_refuse_in_one_line(hand_facts):
    model = conet(4, {"t": 3, "s": 3})
    assert model.reads == {"paired"} and Joint.refuses_model(model) is None
    for cls, words in ((TargetOnly, "strategy=joint"), (FineTune, "source-stage model")):
        why = cls.refuses_model(model)
        assert words in why and "\n" not in why
    with pytest.raises(ConfigError, match="config key 'loss'.*loss=bce"):
        Joint(model, "t", ["s"], loss=CrossEntropyLoss(), facts=hand_facts(4, 3))
    with pytest.raises(ConfigError, match="two towers"):
        conet(4, {"t": 3, "a": 3, "b": 2})
    with pytest.raises(ConfigError, match="config key 'strategy'.*use strategy=joint"):
        conet(4, {"t": 3})
    with pytest.raises(ConfigError, match="model.hidden_dims"):
        conet(4, {"t": 3, "s": 3}, hidden_dims=[])


def test_train_cli_runs_conet_with_the_default_strategy(run_cli, run_overrides, tmp_path):
    done = run_cli("translearn-train", ["model=conet", *run_overrides, "trainer.max_epochs=1", "logger=csv",
                                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Joint on synthetic" in done.stdout and "ndcg@10" in done.stdout
    ndcg = float(next(line.split()[2] for line in done.stdout.splitlines() if line.startswith("ndcg@10")))
    assert np.isfinite(ndcg) and 0 <= ndcg <= 1


@pytest.mark.parametrize("strategy", ["target_only", "finetune"])
def test_train_cli_refuses_other_strategies_before_training(strategy, run_cli, run_overrides, tmp_path):
    """A strategy that trains the target alone builds a one-domain model, which the factory refuses."""
    done = run_cli("translearn-train", ["model=conet", f"strategy={strategy}", *run_overrides,
                                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "config key 'strategy'" in line]
    assert len(errors) == 1 and "paired batches" in errors[0] and "use strategy=joint" in errors[0]
    assert "epoch" not in done.stderr
