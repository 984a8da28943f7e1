"""Encoders map ids (and later text, images, sequences) to vectors ``[B, D]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class IdEmbedding(nn.Embedding):
    """A trainable vector per id: ``forward(ids [...]) -> [..., dim]``; ``all() -> [num, dim]``.

    ``sparse = True`` (set by an optimizer that asks for it, e.g. ``LazyAdam``) makes ``forward``'s
    gradient a sparse tensor over the ids looked up; ``all()`` always gives a dense one. An ``nn.Embedding``
    (same ``weight``), so that DistributedDataParallel, which asks ``isinstance(module, nn.Embedding) and
    module.sparse`` when it wraps the model, reduces its sparse gradients as sparse tensors.
    """

    def __init__(self, num: int, dim: int, init_std: float = 0.01) -> None:
        if num < 1 or dim < 1:
            raise ValueError(f"IdEmbedding needs num >= 1 and dim >= 1, got num={num}, dim={dim}")
        super().__init__(num, dim, _weight=torch.randn(num, dim) * init_std)
        self.dim = dim
        self.sparse = False

    @property
    def num(self) -> int:
        return self.weight.shape[0]

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight, sparse=self.sparse)

    def all(self) -> Tensor:
        return self.weight


class BiasedIdEmbedding(nn.Module):
    """An id embedding plus a scalar bias per id, laid out so that a dot product adds both biases:
    users give ``[w_u, 1, b_u]`` and items ``[w_i, b_i, 1]``, hence ``user . item = w_u . w_i + b_i + b_u``
    (biased matrix factorisation). ``forward(ids [...]) -> [..., dim + 2]``; ``all() -> [num, dim + 2]``.
    """

    def __init__(self, num: int, dim: int, side: str, init_std: float = 0.01) -> None:
        super().__init__()
        if side not in ("user", "item"):
            raise ValueError(f"BiasedIdEmbedding side must be 'user' or 'item', got {side!r}")
        self.embedding = IdEmbedding(num, dim, init_std)
        self.bias = nn.Parameter(torch.zeros(num))
        self.side = side
        self.dim = dim + 2

    @property
    def num(self) -> int:
        return self.embedding.num

    def forward(self, ids: Tensor) -> Tensor:
        vec, bias = self.embedding(ids), self.bias[ids].unsqueeze(-1)
        one = torch.ones_like(bias)
        return torch.cat([vec, one, bias] if self.side == "user" else [vec, bias, one], dim=-1)

    def all(self) -> Tensor:
        return self.forward(torch.arange(self.num, device=self.bias.device))

    def complete(self, vectors: Tensor) -> Tensor:
        """Vectors [..., dim + 2] produced elsewhere (e.g. mapped from a source) with the constant slot
        set back to exactly 1, so they score like this encoder's own vectors."""
        slot = self.dim - 2 if self.side == "user" else self.dim - 1
        fixed = vectors.clone()
        fixed[..., slot] = 1.0
        return fixed
