"""Adaptors: trainable maps from frozen content features [..., F] to a model's item space [..., D].

One adaptor serves every domain of a model (``Recommender.content_adaptor``), so fine-tuning, which
copies parameters by name and shape, carries it from a source model to a target model.

``linear``:        ``x W + b`` (W: [F, D]).
``whitening_moe``: UniSRec-style parametric whitening with a mixture of experts: expert k maps
                   ``(x - b_k) W_k`` (b_k: [F], W_k: [F, D]); a softmax gate over x (``x G``, G: [F, K])
                   weighs the K experts: ``out = sum_k softmax(x G)_k (x - b_k) W_k``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from translearn.errors import ConfigError

ADAPTORS = ("linear", "whitening_moe")


class LinearAdaptor(nn.Module):
    """``x [..., F] -> x W + b [..., D]``."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class WhiteningMoEAdaptor(nn.Module):
    """``x [..., F] -> sum_k g_k(x) (x - b_k) W_k [..., D]`` with ``g(x) = softmax(x G)`` over K experts."""

    def __init__(self, in_dim: int, out_dim: int, experts: int = 8) -> None:
        super().__init__()
        if experts < 1:
            raise ConfigError(f"model.content.adaptor_experts: expected an integer >= 1, got {experts}",
                              config_key="model.content.adaptor_experts")
        self.in_dim, self.out_dim, self.experts = in_dim, out_dim, experts
        self.bias = nn.Parameter(torch.zeros(experts, in_dim))            # b_k
        self.weight = nn.Parameter(torch.empty(experts, in_dim, out_dim))  # W_k
        self.gate = nn.Linear(in_dim, experts, bias=False)                 # G
        bound = in_dim ** -0.5  # each expert starts like nn.Linear's default init
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.gate.weight)  # equal weights at the start

    def forward(self, x: Tensor) -> Tensor:
        centred = x.unsqueeze(-2) - self.bias                                        # [..., K, F]
        per_expert = torch.einsum("...kf,kfd->...kd", centred, self.weight)          # [..., K, D]
        gate = torch.softmax(self.gate(x), dim=-1).unsqueeze(-1)                     # [..., K, 1]
        return (gate * per_expert).sum(-2)


def make_adaptor(kind: str, in_dim: int, out_dim: int, experts: int = 8) -> nn.Module:
    """The adaptor ``model.content.adaptor`` names, mapping [..., in_dim] to [..., out_dim]."""
    if kind == "linear":
        return LinearAdaptor(in_dim, out_dim)
    if kind == "whitening_moe":
        return WhiteningMoEAdaptor(in_dim, out_dim, int(experts))
    raise ConfigError(f"model.content.adaptor: expected one of {', '.join(ADAPTORS)}, got {kind!r}",
                      config_key="model.content.adaptor")
