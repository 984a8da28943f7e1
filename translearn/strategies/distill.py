"""Knowledge distillation: a trained teacher's soft scores on target candidates guide the student."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from translearn.errors import check_finite
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

    KD rows are the target batch's rows and ``kd_users`` users drawn uniformly from the whole user index
    (the teacher, which saw their source data, knows users that have few or no target training rows).
    A row's candidates are (batch rows only) its positive and sampled negatives, then ``top_candidates``
    items drawn from the teacher's top ``teacher_top_k`` for that user and ``extra_candidates`` uniform
    items: the student learns both which items the teacher puts first and how it orders the rest.
    The teacher (``source_model``: by default a joint model trained on sources + target training rows,
    or any checkpoint that can score target items) is frozen; the student may be smaller (compression).
    """

    uses_source_model = True
    user_bridge = "content"  # see translearn.strategies.bridge
    refuses_sequences = ("its teacher scores users outside the batch by id (kd_users, "
                         "teacher_top), which a sequence model cannot (use joint, finetune or fusion)")

    def __init__(self, model: Recommender, target_domain: str, source_domains: Sequence[str] = (),
                 source_model: Recommender | None = None, alpha: float = 1.0, temperature: float = 1.0,
                 extra_candidates: int = 16, top_candidates: int = 16, teacher_top_k: int = 50,
                 kd_users: int = 1024, **kwargs: Any) -> None:
        if source_model is None:
            raise ValueError("distillation needs a teacher (source_model: the stage model or strategy.source_ckpt)")
        check_finite(alpha=alpha, temperature=temperature)
        counts = {"extra_candidates": extra_candidates, "top_candidates": top_candidates, "kd_users": kd_users}
        if alpha < 0 or temperature <= 0 or min(counts.values()) < 0 or teacher_top_k < top_candidates:
            raise ValueError(f"strategy.alpha must be >= 0, strategy.temperature > 0, {', '.join(counts)} >= 0 and "
                             f"strategy.teacher_top_k >= top_candidates; got alpha={alpha}, "
                             f"temperature={temperature}, {counts}, teacher_top_k={teacher_top_k}")
        if kd_users and extra_candidates + top_candidates < 2:
            raise ValueError("strategy.kd_users needs 2+ candidates per row (top_candidates + extra_candidates)")
        super().__init__(model, target_domain, source_domains, **kwargs)
        source_model.item_encoder(target_domain)  # the teacher must score target items
        self.teacher = source_model.requires_grad_(False).eval()
        self.alpha, self.temperature = alpha, temperature
        self.extra_candidates, self.top_candidates = extra_candidates, top_candidates
        self.teacher_top_k = teacher_top_k
        self.kd_users = kd_users
        self._teacher_top: Tensor | None = None

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # a teacher with dropout stays deterministic
        return self

    @torch.no_grad()
    def teacher_top(self, chunk: int = 1024) -> Tensor:
        """[num_users, teacher_top_k] the teacher's highest-scored target items per user (computed once)."""
        if self._teacher_top is None:
            n_users = self.model.user_encoder.num
            device = next(self.teacher.parameters()).device
            k = min(self.teacher_top_k, self.model.item_encoder(self.target_domain).num)
            parts = [self.teacher.score_all(self.target_domain, torch.arange(s, min(s + chunk, n_users), device=device))
                     .topk(k, dim=1).indices for s in range(0, n_users, chunk)]
            self._teacher_top = torch.cat(parts)
        return self._teacher_top

    def kd_items(self, users: Tensor, first: list[Tensor]) -> Tensor:
        """[R, C] candidates: ``first`` columns, then teacher-top and uniform draws."""
        parts = list(first)
        n = len(users)
        if self.top_candidates:
            top = self.teacher_top()[users]  # [R, K]
            pick = torch.rand(n, top.shape[1], device=users.device).argsort(dim=1)[:, : self.top_candidates]
            parts.append(top.gather(1, pick))
        if self.extra_candidates:
            n_items = self.model.item_encoder(self.target_domain).num
            parts.append(torch.randint(0, n_items, (n, self.extra_candidates), device=users.device))
        return torch.cat(parts, dim=1)

    def compute_loss(self, batch: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        part = batch[self.target_domain]
        loss_t = self.domain_loss(self.target_domain, part)
        users = part["users"]
        first = [part["items"].unsqueeze(1)] + ([part["negatives"]] if "negatives" in part else [])
        loss_kd = self._kd(users, self.kd_items(users, first))
        rows = len(users)
        if self.kd_users:
            others = torch.randint(0, self.model.user_encoder.num, (self.kd_users,), device=users.device)
            loss_kd = (loss_kd * rows + self._kd(others, self.kd_items(others, [])) * self.kd_users) / (
                rows + self.kd_users)
        return {"loss": loss_t + self.alpha * loss_kd, "loss_t": loss_t, "loss_kd": loss_kd}

    def _kd(self, users: Tensor, items: Tensor) -> Tensor:
        """Mean KL term over rows: users [R], items [R, C]."""
        with torch.no_grad():
            teacher = self.teacher.score(self.target_domain, users, items)
        student = self.model.score(self.target_domain, users, items)
        return distillation_kl(teacher, student, self.temperature)
