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
    """``loss = loss_t + alpha * T^2 * KL(teacher_T || student_T)`` over each row's candidates.

    The candidates of a row are its positive, its sampled negatives and ``extra_candidates`` more items
    drawn uniformly from the target catalogue. The teacher (``source_model``: by default a joint model
    trained on sources + target training rows, or any checkpoint that can score target items) is frozen;
    the student may be smaller (model compression).
    """

    uses_source_model = True

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, alpha: float = 1.0, temperature: float = 1.0,
                 extra_candidates: int = 32, **kwargs: Any) -> None:
        if source_model is None:
            raise ValueError("distillation needs a teacher (source_model: the stage model or strategy.source_ckpt)")
        if alpha < 0 or temperature <= 0 or extra_candidates < 0:
            raise ValueError(f"strategy.alpha must be >= 0, strategy.temperature > 0 and strategy.extra_candidates "
                             f">= 0, got {alpha}, {temperature} and {extra_candidates}")
        super().__init__(model, target_domain, source_domains, **kwargs)
        source_model.item_encoder(target_domain)  # the teacher must score target items
        self.teacher = source_model.requires_grad_(False).eval()
        self.alpha, self.temperature, self.extra_candidates = alpha, temperature, extra_candidates

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # a teacher with dropout stays deterministic
        return self

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        part = batch[self.target_domain]
        loss_t = self.domain_loss(self.target_domain, part)
        users = part["users"]
        candidates = [part["items"].unsqueeze(1)]
        if "negatives" in part:
            candidates.append(part["negatives"])
        if self.extra_candidates:
            n_items = self.model.item_encoder(self.target_domain).num
            candidates.append(torch.randint(0, n_items, (len(users), self.extra_candidates), device=users.device))
        items = torch.cat(candidates, dim=1)  # [B, C]
        with torch.no_grad():
            teacher = self.teacher.score(self.target_domain, users, items)
        student = self.model.score(self.target_domain, users, items)
        loss_kd = distillation_kl(teacher, student, self.temperature)
        return {"loss": loss_t + self.alpha * loss_kd, "loss_t": loss_t, "loss_kd": loss_kd}
