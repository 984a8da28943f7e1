"""Tests for translearn.losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from translearn.losses import BCELoss, BPRLoss, CrossEntropyLoss, MSELoss, SampledSoftmaxLoss


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_bpr_hand_value() -> None:
    # -log(sigmoid(2 - 0)) = log(1 + e^-2) = 0.126928...
    loss = BPRLoss()(torch.tensor([2.0]), torch.tensor([[0.0]]))
    assert float(loss) == pytest.approx(0.1269280110429725)
    # mean over B=2, N=2 of -log sigmoid(pos - neg): differences 1, -1, 0, 3
    pos, neg = torch.tensor([1.0, 2.0]), torch.tensor([[0.0, 2.0], [2.0, -1.0]])
    expected = sum(-math.log(_sigmoid(d)) for d in (1.0, -1.0, 0.0, 3.0)) / 4
    assert float(BPRLoss()(pos, neg)) == pytest.approx(expected)


def test_bpr_is_stable_for_large_margins() -> None:
    loss = BPRLoss()(torch.tensor([-200.0]), torch.tensor([[200.0]]))
    assert float(loss) == pytest.approx(400.0)  # -log sigmoid(-400) ~ 400, no inf


def test_bpr_gradient_pushes_positive_up_and_negative_down() -> None:
    pos = torch.tensor([0.5], requires_grad=True)
    neg = torch.tensor([[0.7, -0.2]], requires_grad=True)
    BPRLoss()(pos, neg).backward()
    assert pos.grad is not None and neg.grad is not None
    assert float(pos.grad) < 0  # gradient descent increases pos
    assert (neg.grad > 0).all()  # and decreases each negative


def test_bce_hand_value() -> None:
    # logits [pos=1, neg=0, neg=-2] with labels [1, 0, 0], averaged over the 3 logits:
    # (-log sigmoid(1) - log(1 - sigmoid(0)) - log(1 - sigmoid(-2))) / 3
    expected = (-math.log(_sigmoid(1.0)) - math.log(0.5) - math.log(1 - _sigmoid(-2.0))) / 3
    loss = BCELoss()(torch.tensor([1.0]), torch.tensor([[0.0, -2.0]]))
    assert float(loss) == pytest.approx(expected)
    # B=2: the mean runs over all B * (1 + N) = 4 logits
    loss2 = BCELoss()(torch.tensor([1.0, 0.0]), torch.tensor([[0.0], [0.0]]))
    assert float(loss2) == pytest.approx((-math.log(_sigmoid(1.0)) - 3 * math.log(0.5)) / 4)


def test_sampled_softmax_equal_logits_gives_log_of_candidates() -> None:
    n = 7
    loss = SampledSoftmaxLoss()(torch.full((3,), 0.3), torch.full((3, n), 0.3))
    assert float(loss) == pytest.approx(math.log(1 + n))


def test_sampled_softmax_hand_value_and_temperature() -> None:
    # logits [2, 0, 1] / tau with the positive first: -log(e^(2/tau) / (e^(2/tau) + e^0 + e^(1/tau)))
    pos, neg = torch.tensor([2.0]), torch.tensor([[0.0, 1.0]])
    for tau in (1.0, 0.5):
        expected = -math.log(math.exp(2 / tau) / (math.exp(2 / tau) + 1.0 + math.exp(1 / tau)))
        assert float(SampledSoftmaxLoss(temperature=tau)(pos, neg)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="temperature"):
        SampledSoftmaxLoss(temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SampledSoftmaxLoss(temperature=-1.0)


def test_mse_hand_value() -> None:
    # errors 1, -2, 0 -> (1 + 4 + 0) / 3
    loss = MSELoss()(torch.tensor([4.0, 1.0, 3.0]), torch.tensor([3.0, 3.0, 3.0]))
    assert float(loss) == pytest.approx(5 / 3)
    with pytest.raises(ValueError):
        MSELoss()(torch.zeros(3), torch.zeros(2))


def test_loss_capabilities_flags() -> None:
    for cls in (BPRLoss, BCELoss, SampledSoftmaxLoss):
        assert cls.needs_negatives is True and cls.needs_ratings is False
    assert MSELoss.needs_ratings is True and MSELoss.needs_negatives is False


def test_pairwise_losses_check_shapes() -> None:
    for loss in (BPRLoss(), BCELoss(), SampledSoftmaxLoss()):
        with pytest.raises(ValueError):
            loss(torch.zeros(3), torch.zeros(2, 4))
        # a [B] negative is one negative per positive
        assert loss(torch.zeros(3), torch.zeros(3)).shape == ()


def test_cross_entropy_hand_value_ignores_minus_one() -> None:
    # row 0: logits [1, 0, 2], label 2 -> -log(e^2 / (e + 1 + e^2)); row 1: [0, 0, 0], label 0 -> log 3;
    # row 2 has label -1 and is left out of the mean
    logits = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [50.0, -50.0, 0.0]])
    labels = torch.tensor([2, 0, -1])
    row0 = -math.log(math.exp(2) / (math.exp(1) + 1 + math.exp(2)))
    assert float(CrossEntropyLoss()(logits, labels)) == pytest.approx((row0 + math.log(3)) / 2)
    # [B, L, I] with [B, L] is the same rows flattened
    assert float(CrossEntropyLoss()(logits.view(1, 3, 3), labels.view(1, 3))) == pytest.approx((row0 + math.log(3)) / 2)


def test_cross_entropy_with_no_label_is_zero_with_a_graph() -> None:
    logits = torch.randn(2, 4, requires_grad=True)
    loss = CrossEntropyLoss()(logits, torch.tensor([-1, -1]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(2, 4))


def test_cross_entropy_refuses_a_pos_neg_call() -> None:
    with pytest.raises(ValueError, match="all-item logits"):
        CrossEntropyLoss()(torch.zeros(4), torch.zeros(4, 2))
    assert CrossEntropyLoss.needs_all_logits and not CrossEntropyLoss.needs_negatives


def test_ce_config_builds_the_loss() -> None:
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = OmegaConf.load(Path(__file__).parents[1] / "conf" / "loss" / "ce.yaml")
    assert isinstance(instantiate(conf), CrossEntropyLoss)
