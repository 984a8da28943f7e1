"""User encoders that reuse representations learned on a source domain."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ReusedFeatureEncoder(nn.Module):
    """A frozen source vector per user combined with the target model's own trainable embedding.

    frozen:  [U, F] source-side user vectors (zeros for users the source never saw), a buffer
    own:     the trainable [U, D] id embedding of the target model
    combine: ``concat``: ``W [frozen_u ; own_u]`` with a learned W: [D, F + D];
             ``gate``:   ``own_u + g_u * (P frozen_u)`` with a learned projection P: [D, F] and a per-dim
                         gate ``g_u = sigmoid(G [frozen_u ; own_u] + b)``, so the model learns how much
                         source signal to let in, per user.
    forward(users [B]) -> [B, D]
    """

    def __init__(self, frozen: Tensor, own: nn.Module, combine: str = "concat") -> None:
        super().__init__()
        if combine not in ("concat", "gate"):
            raise ValueError(f"strategy.combine must be 'concat' or 'gate', got {combine!r}")
        if frozen.shape[0] != own.num:
            raise ValueError(f"frozen features cover {frozen.shape[0]} users, the embedding {own.num}")
        self.register_buffer("frozen", frozen.detach().clone())
        self.own = own
        self.combine = combine
        f, d = frozen.shape[1], own.dim
        self.dim = d
        if combine == "concat":
            self.mix = nn.Linear(f + d, d, bias=False)
            with torch.no_grad():  # start as "own embedding + a small share of the source vector"
                self.mix.weight.zero_()
                self.mix.weight[:, f:] = torch.eye(d)
                self.mix.weight[:, :f] = 0.01 * torch.randn(d, f)
        else:
            self.project = nn.Linear(f, d, bias=False)
            self.gate = nn.Linear(f + d, d)

    @property
    def num(self) -> int:
        return self.own.num

    def forward(self, users: Tensor) -> Tensor:
        frozen, own = self.frozen[users], self.own(users)
        both = torch.cat([frozen, own], dim=-1)
        if self.combine == "concat":
            return self.mix(both)
        return own + torch.sigmoid(self.gate(both)) * self.project(frozen)

    def all(self) -> Tensor:
        return self.forward(torch.arange(self.num, device=self.frozen.device))


class MappedUserEncoder(nn.Module):
    """EMCDR-style user vectors: a user with target training data uses its own target embedding; a user
    without (cold start) uses ``mapper(source vector)``.

    own:      trainable [U, D] target embedding
    source:   [U, F] frozen source-stage user vectors (a buffer)
    has_own:  [U] bool, whether the user has target training data (a buffer, filled in by the strategy)
    mapper:   nn.Module [B, F] -> [B, D]; one with ``reads_users = True`` is called as ``mapper(source [B, F],
              users [B])`` (a per-user bridge, ``translearn.models.meta_bridge.MetaBridge``)
    """

    def __init__(self, own: nn.Module, source: Tensor, mapper: nn.Module) -> None:
        super().__init__()
        self.own, self.mapper = own, mapper
        self.register_buffer("source", source.detach().clone())
        self.register_buffer("has_own", torch.zeros(own.num, dtype=torch.bool))

    @property
    def num(self) -> int:
        return self.own.num

    def mapped(self, users: Tensor) -> Tensor:
        source = self.source[users]
        out = self.mapper(source, users) if getattr(self.mapper, "reads_users", False) else self.mapper(source)
        complete = getattr(self.own, "complete", None)  # e.g. biased MF: keep the constant slot at 1
        return complete(out) if complete is not None else out

    def forward(self, users: Tensor) -> Tensor:
        """[B] users -> [B, D]; the mapper runs on the cold users of the batch only (none in training)."""
        own = self.own(users)
        cold = (~self.has_own[users]).nonzero(as_tuple=True)[0]
        if len(cold) == 0:
            return own
        return own.index_copy(0, cold, self.mapped(users[cold]).to(own.dtype))
