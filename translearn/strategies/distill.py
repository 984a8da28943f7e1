"""Knowledge distillation: a trained teacher's soft scores on target candidates guide the student."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from translearn.models.recommender import Recommender
from translearn.strategies.base import TransferStrategy


def distillation_kl(teacher: Tensor, student: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` over the last dim, mean over rows.

    teacher, student: [B, C] scores of the same C candidates. The T^2 factor keeps the gradient scale
    independent of T (Hinton et al., 2015).
    """
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return temperature**2 * kl.mean()


class Distillation(TransferStrategy):
    """``loss = loss_t + alpha * T^2 * KL(teacher_T || student_T)``, the KL averaged over KD rows.

    KD rows are the target batch's rows, with candidates = the positive, its sampled negatives and
    ``extra_candidates`` items drawn uniformly from the target catalogue, plus ``kd_users`` users drawn
    uniformly from the whole user index, each with ``extra_candidates`` uniform items: the teacher's
    scores reach users with few or no target training rows (which is where the teacher knows more).
    The teacher (``source_model``: by default a joint model trained on sources + target training rows,
    or any checkpoint that can score target items) is frozen; the student may be smaller (compression).
    """

    uses_source_model = True

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, alpha: float = 1.0, temperature: float = 1.0,
                 extra_candidates: int = 32, kd_users: int = 1024, **kwargs: Any) -> None:
        if source_model is None:
            raise ValueError("distillation needs a teacher (source_model: the stage model or strategy.source_ckpt)")
        if alpha < 0 or temperature <= 0 or extra_candidates < 0 or kd_users < 0:
            raise ValueError(f"strategy.alpha must be >= 0, strategy.temperature > 0, strategy.extra_candidates and "
                             f"strategy.kd_users >= 0, got {alpha}, {temperature}, {extra_candidates}, {kd_users}")
        if kd_users and not extra_candidates:
            raise ValueError("strategy.kd_users needs strategy.extra_candidates >= 2 to compare items")
        super().__init__(model, target_domain, source_domains, **kwargs)
        source_model.item_encoder(target_domain)  # the teacher must score target items
        self.teacher = source_model.requires_grad_(False).eval()
        self.alpha, self.temperature, self.extra_candidates = alpha, temperature, extra_candidates
        self.kd_users = kd_users

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # a teacher with dropout stays deterministic
        return self

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        part = batch[self.target_domain]
        loss_t = self.domain_loss(self.target_domain, part)
        users = part["users"]
        n_items = self.model.item_encoder(self.target_domain).num
        candidates = [part["items"].unsqueeze(1)]
        if "negatives" in part:
            candidates.append(part["negatives"])
        if self.extra_candidates:
            candidates.append(torch.randint(0, n_items, (len(users), self.extra_candidates), device=users.device))
        loss_kd = self._kd(users, torch.cat(candidates, dim=1))  # [B, C] candidates of the batch rows
        rows = len(users)
        if self.kd_users:
            n_users = self.model.user_encoder.num
            others = torch.randint(0, n_users, (self.kd_users,), device=users.device)
            items = torch.randint(0, n_items, (self.kd_users, self.extra_candidates), device=users.device)
            loss_kd = (loss_kd * rows + self._kd(others, items) * self.kd_users) / (rows + self.kd_users)
        return {"loss": loss_t + self.alpha * loss_kd, "loss_t": loss_t, "loss_kd": loss_kd}

    def _kd(self, users: Tensor, items: Tensor) -> Tensor:
        """Mean KL term over rows: users [R], items [R, C]."""
        with torch.no_grad():
            teacher = self.teacher.score(self.target_domain, users, items)
        student = self.model.score(self.target_domain, users, items)
        return distillation_kl(teacher, student, self.temperature)
