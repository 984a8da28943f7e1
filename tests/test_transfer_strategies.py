"""Each transfer strategy's loss is its formula (by hand on a tiny batch); frozen parts stay frozen."""

from __future__ import annotations

import math

import pytest
import torch

from translearn.losses import BPRLoss
from translearn.models import matrix_factorization
from translearn.strategies import Distillation, FeatureReuse, FineTune, Fusion, Joint, Mapping
from translearn.strategies.distill import distillation_kl
from translearn.strategies.fusion import standardise


def _mf(users: list[float], items: dict[str, list[float]]) -> torch.nn.Module:
    """1-d MF with hand-set vectors."""
    model = matrix_factorization(len(users), {d: len(v) for d, v in items.items()}, embedding_dim=1)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.tensor(users).unsqueeze(1))
        for d, v in items.items():
            model.item_encoders[d].weight.copy_(torch.tensor(v).unsqueeze(1))
    return model


def _bpr(pos: float, neg: float) -> float:
    return math.log1p(math.exp(-(pos - neg)))


TARGET_BATCH = {"t": {"users": torch.tensor([0, 1]), "items": torch.tensor([0, 1]),
                      "negatives": torch.tensor([[2], [0]])}}



def _source():
    return _mf([0.5, -1.0], {"s": [1.0, 2.0]})


def _step(strategy) -> None:
    opt = torch.optim.SGD(strategy.param_groups(), lr=0.5)
    opt.zero_grad()
    strategy.compute_loss(TARGET_BATCH)["loss"].backward()
    opt.step()


def test_finetune_copies_shared_weights_and_l2sp_is_the_squared_distance():
    target = _mf([9.0, 9.0], {"t": [2.0, 0.0, -1.0]})
    strategy = FineTune(target, "t", ["s"], source_model=_source(), l2sp=0.1, loss=BPRLoss())
    assert strategy.transferred == ["user_encoder.weight"]
    assert target.user_encoder.weight.flatten().tolist() == [0.5, -1.0]
    out = strategy.compute_loss(TARGET_BATCH)
    # users 0.5 / -1.0: user 0 pos 1.0 vs neg -0.5; user 1 pos 0 vs neg -2 -> mean BPR; no drift yet
    loss_t = (_bpr(1.0, -0.5) + _bpr(0.0, -2.0)) / 2
    assert out["loss_t"].item() == pytest.approx(loss_t, rel=1e-6)
    assert out["loss_l2sp"].item() == 0.0
    with torch.no_grad():
        target.user_encoder.weight += torch.tensor([[0.3], [0.4]])
    out = strategy.compute_loss(TARGET_BATCH)
    assert out["loss_l2sp"].item() == pytest.approx(0.3**2 + 0.4**2, rel=1e-5)
    assert out["loss"].item() == pytest.approx(out["loss_t"].item() + 0.1 * 0.25, rel=1e-5)


def test_model_fixing_freezes_named_submodules_and_scales_transferred_lr(hand_facts):
    target = _mf([9.0, 9.0], {"t": [2.0, 0.0, -1.0]})
    strategy = FineTune(target, "t", ["s"], source_model=_source(), freeze=["user_encoder"],
                        facts=hand_facts(2, 3))
    before_users, before_items = target.user_encoder.weight.clone(), target.item_encoders["t"].weight.clone()
    _step(strategy)
    assert torch.equal(target.user_encoder.weight, before_users)
    assert not torch.equal(target.item_encoders["t"].weight, before_items)
    with pytest.raises(ValueError, match="no submodule 'users'.*user_encoder"):
        FineTune(_mf([0, 0], {"t": [0.0]}), "t", ["s"], source_model=_source(), freeze=["users"])
    scaled = FineTune(_mf([0, 0], {"t": [0.0]}), "t", ["s"], source_model=_source(), transferred_lr_scale=0.1,
                      optimizer=lambda groups: torch.optim.SGD(groups, lr=1.0))
    lrs = sorted(g["lr"] for g in scaled.configure_optimizers().param_groups)
    assert lrs == pytest.approx([0.1, 1.0])


def test_distillation_kl_by_hand():
    teacher, student = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    p = [math.exp(1.0) / (math.exp(1.0) + 1.0), 1.0 / (math.exp(1.0) + 1.0)]  # softmax(teacher / 2)
    kl = sum(pi * math.log(pi / 0.5) for pi in p)
    assert distillation_kl(teacher, student, temperature=2.0).item() == pytest.approx(4 * kl, rel=1e-6)
    assert distillation_kl(teacher, teacher, temperature=3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_loss_and_a_frozen_teacher():
    teacher = _mf([1.0, 2.0], {"t": [1.0, -1.0, 0.0], "s": [0.0]})
    student = _mf([0.5, 0.5], {"t": [0.0, 0.0, 0.0]})
    strategy = Distillation(student, "t", ["s"], source_model=teacher, alpha=0.5, temperature=1.0,
                            extra_candidates=0, top_candidates=0, kd_users=0, loss=BPRLoss())
    out = strategy.compute_loss(TARGET_BATCH)
    # student scores are all 0: loss_t = log 2; candidates per row = [pos, neg]
    # teacher row 0 (user 1.0): items [0, 2] -> [1, 0]; row 1 (user 2.0): items [1, 0] -> [-2, 2]
    def kl(a: float, b: float) -> float:
        p = [math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))]
        return sum(pi * math.log(pi / 0.5) for pi in p)
    loss_kd = (kl(1.0, 0.0) + kl(-2.0, 2.0)) / 2
    assert out["loss_t"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert out["loss_kd"].item() == pytest.approx(loss_kd, rel=1e-5)
    assert out["loss"].item() == pytest.approx(math.log(2) + 0.5 * loss_kd, rel=1e-5)
    before = [p.clone() for p in teacher.parameters()]
    _step(strategy)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    assert all(not p.requires_grad for p in teacher.parameters())
    with pytest.raises(KeyError, match="no item tower for domain 't'"):
        Distillation(_mf([0.0, 0.0], {"t": [0.0]}), "t", ["s"], source_model=_source())


def test_distillation_also_teaches_users_outside_the_batch():
    teacher = _mf([1.0, -2.0], {"t": [1.0, -1.0, 0.0], "s": [0.0]})
    student = _mf([0.0, 0.0], {"t": [0.5, 0.1, -0.3]})  # zero users: every student score is 0
    strategy = Distillation(student, "t", ["s"], source_model=teacher, extra_candidates=3, top_candidates=0,
                            kd_users=4)
    torch.manual_seed(0)
    out = strategy.compute_loss(TARGET_BATCH)
    # replay the same draws: batch rows get 3 extra items each, then 4 users with 3 items each
    gen = torch.Generator().manual_seed(0)
    extra = torch.randint(0, 3, (2, 3), generator=gen)
    others = torch.randint(0, 2, (4,), generator=gen)
    items = torch.randint(0, 3, (4, 3), generator=gen)
    u = torch.tensor([1.0, -2.0])
    v = torch.tensor([1.0, -1.0, 0.0])
    rows = torch.cat([torch.tensor([[0, 2], [1, 0]]), extra], dim=1)
    kl_batch = distillation_kl(u[[0, 1]].unsqueeze(1) * v[rows], torch.zeros(2, 5), 1.0)
    kl_users = distillation_kl(u[others].unsqueeze(1) * v[items], torch.zeros(4, 3), 1.0)
    expected = (kl_batch * 2 + kl_users * 4) / 6  # mean over all 6 KD rows
    assert out["loss_kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the extra users get gradients although none of them is in the target batch
    out["loss"].backward()
    assert student.user_encoder.weight.grad[others].abs().sum() > 0


def test_feature_reuse_concat_starts_from_the_own_embedding_and_keeps_source_vectors_frozen(hand_facts):
    target = _mf([3.0, 4.0], {"t": [2.0, 0.0, -1.0]})
    strategy = FeatureReuse(target, "t", ["s"], source_model=_source(), combine="concat",
                            facts=hand_facts(2, 3))
    encoder = target.user_encoder
    assert encoder.frozen.flatten().tolist() == [0.5, -1.0]
    # output = W [frozen ; own] with W = [0.01 * r, 1] at the start
    w = encoder.mix.weight.detach()
    expected = w[0, 0] * torch.tensor([0.5, -1.0]) + torch.tensor([3.0, 4.0])
    torch.testing.assert_close(encoder(torch.tensor([0, 1])).flatten(), expected)
    _step(strategy)
    assert encoder.frozen.flatten().tolist() == [0.5, -1.0]
    gated = FeatureReuse(_mf([1.0, 1.0], {"t": [1.0]}), "t", ["s"], source_model=_source(), combine="gate",
                         facts=hand_facts(2, 1))
    enc = gated.model.user_encoder
    with torch.no_grad():  # P = 2, gate G = [1 (source), 0.5 (own)], bias -0.25
        enc.project.weight.fill_(2.0)
        enc.gate.weight.copy_(torch.tensor([[1.0, 0.5]]))
        enc.gate.bias.fill_(-0.25)
    # user 0: source 0.5, own 1 -> gate sigmoid(0.5 + 0.5 - 0.25), output 1 + gate * 2 * 0.5
    # user 1: source -1, own 1  -> gate sigmoid(-1 + 0.5 - 0.25), output 1 + gate * 2 * (-1)
    def sigmoid(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x))

    expected = [1.0 + sigmoid(0.75) * 1.0, 1.0 - 2.0 * sigmoid(-0.75)]
    assert enc(torch.tensor([0, 1])).flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_fusion_standardises_and_mixes_scores():
    target, source = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 0.0, 20.0]])
    z_t = torch.tensor([[-1.0, 0.0, 1.0]])  # mean 2, sample std 1
    z_s = (source - 10.0) / 10.0  # mean 10, sample std 10
    torch.testing.assert_close(standardise(target), z_t)
    torch.testing.assert_close(Fusion.fuse(target, source, 0.25), 0.75 * z_t + 0.25 * z_s)


def test_fusion_picks_the_weight_on_validation_and_uses_it_for_test():
    target_model = _mf([1.0], {"t": [3.0, 2.0, 1.0]})   # ranks item 0 first
    source_model = _mf([1.0], {"t": [1.0, 2.0, 3.0]})   # ranks item 2 first
    strategy = Fusion(target_model, "t", ["s"], source_model=source_model, weights=[0.0, 0.5, 1.0],
                      ks=(1,), metrics=("hr",), select_metric="hr@1")
    none = torch.tensor([], dtype=torch.long)
    batch = {"users": torch.tensor([0]), "targets": torch.tensor([[2]]), "exclude_rows": none, "exclude_cols": none,
             "n_candidates": torch.tensor([3])}
    strategy.evaluate_batch(batch, "val")
    logged = {}
    strategy.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    strategy.on_validation_epoch_end()
    assert strategy.weight.item() == 1.0 and logged["val/fusion/weight"] == 1.0
    assert logged["val/fusion/hr@1_w0"] == 0.0 and logged["val/fusion/hr@1_w1"] == 1.0
    strategy.evaluate_batch(batch, "test")
    assert strategy.evaluator.metrics("test")["hr@1"].compute().item() == 1.0


def test_mapping_loss_and_cold_users_use_the_mapped_vector(hand_facts):
    target = _mf([2.0, 2.5, 0.0], {"t": [2.0, 0.0, -1.0]})
    source = _mf([1.0, 2.0, 4.0], {"s": [1.0]})
    strategy = Mapping(target, "t", ["s"], source_model=source, mapper="linear", beta=0.5, map_batch_size=64,
                       loss=BPRLoss(), facts=hand_facts(3, 3))
    encoder = target.user_encoder
    with torch.no_grad():
        encoder.mapper.weight.fill_(1.5)
        encoder.mapper.bias.fill_(0.0)
    strategy.set_users(has_target_train=torch.tensor([True, True, False]).numpy(),
                       has_source=torch.tensor([True, True, True]).numpy())
    assert strategy.map_users.tolist() == [0, 1]  # user 2 has no target vector to map onto
    out = strategy.compute_loss(TARGET_BATCH)
    # Both mapping users have the same squared error, f(1) = 1.5 vs 2 and f(2) = 3 vs 2.5, so loss_map is
    # 0.25 whatever users are drawn; drawing the cold user 2 (f(4) = 6 vs its untrained 0) would add 36.
    assert out["loss_map"].item() == pytest.approx(0.25, rel=1e-6)
    # loss_t by hand: user 0 (2.0) pos item 0 (4) vs neg item 2 (-2); user 1 (2.5) pos item 1 (0) vs item 0 (5)
    loss_t = (_bpr(4.0, -2.0) + _bpr(0.0, 5.0)) / 2
    assert out["loss_t"].item() == pytest.approx(loss_t, rel=1e-6)
    assert out["loss"].item() == pytest.approx(loss_t + 0.5 * 0.25, rel=1e-6)
    vectors = encoder(torch.tensor([0, 1, 2])).flatten().tolist()
    assert vectors == pytest.approx([2.0, 2.5, 6.0])  # user 2 is cold: 1.5 * 4.0


def test_joint_uncertainty_weighting_formula(hand_facts):
    model = _mf([1.0, 2.0], {"t": [2.0, 0.0, -1.0], "s": [1.0, -1.0]})
    strategy = Joint(model, "t", ["s"], lam=1.0, weighting="uncertainty", loss=BPRLoss(),
                     facts=hand_facts(2, 3))
    with torch.no_grad():
        strategy.log_vars.copy_(torch.tensor([0.5, -0.2]))
    batch = {**TARGET_BATCH, "s": {"users": torch.tensor([1]), "items": torch.tensor([0]),
                                   "negatives": torch.tensor([[1]])}}
    out = strategy.compute_loss(batch)
    loss_s, loss_t = out["loss_s"].item(), out["loss_t"].item()
    expected = math.exp(-0.5) * loss_s + 0.5 + math.exp(0.2) * loss_t - 0.2
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["weight_t"].item() == pytest.approx(math.exp(0.2), rel=1e-6)


def test_distillation_samples_candidates_from_the_teacher_top_items():
    teacher = _mf([1.0, -1.0], {"t": [0.5, 3.0, -2.0, 1.0], "s": [0.0]})
    strategy = Distillation(_mf([0.0, 0.0], {"t": [0.0] * 4}), "t", ["s"], source_model=teacher,
                            teacher_top_k=2, top_candidates=2, extra_candidates=0, kd_users=0)
    # user 0 (vector 1) ranks items 1 (3.0) and 3 (1.0) first; user 1 (vector -1) ranks 2 (2.0) and 0 (-0.5)
    assert strategy.teacher_top().tolist() == [[1, 3], [2, 0]]
    items = strategy.kd_items(torch.tensor([0, 1]), [])
    assert [sorted(row) for row in items.tolist()] == [[1, 3], [0, 2]]
