"""Encoders map ids (and later text, images, sequences) to vectors ``[B, D]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class IdEmbedding(nn.Module):
    """A trainable vector per id: ``forward(ids [...]) -> [..., dim]``; ``all() -> [num, dim]``."""

    def __init__(self, num: int, dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        if num < 1 or dim < 1:
            raise ValueError(f"IdEmbedding needs num >= 1 and dim >= 1, got num={num}, dim={dim}")
        self.dim = dim
        self.weight = nn.Parameter(torch.randn(num, dim) * init_std)

    @property
    def num(self) -> int:
        return self.weight.shape[0]

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight)

    def all(self) -> Tensor:
        return self.weight
