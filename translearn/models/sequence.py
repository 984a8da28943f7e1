"""Sequence encoders: a user's history of item tokens -> vectors (building blocks for SASRec and GRU4Rec).

Inputs, as built by ``translearn.data.history`` (B = batch, L = history columns, D = ``dim``):
    history [B, L] int64 tokens (0 = padding, RIGHT-padded: position j holds the j-th item),
    history_domain [B, L] int64 domain ids (ignored without a domain embedding), history_len [B] int64.
Both encoders are causal: ``forward_all(...) [B, L, D]`` at position j depends only on items 0..j, so
padding after the last item never changes a real position, and one pass trains every position.
``forward(...) [B, D]`` is the output at position ``history_len - 1`` (for an empty history, the output at
position 0 of an all-padding input: one learned "no history" vector).

Positions count from the start of the (right-padded) history, so the last item of a length-n training
sequence and of a length-n evaluation query sit at the same position n - 1.
The item table ``item_embedding.weight [num_tokens, D]`` is exposed so that output item towers can be
tied to it: score(h, item i of domain d) = h . E[offset_d + i + 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check(history: Tensor, history_len: Tensor) -> None:
    if history.dim() != 2 or history_len.shape != history.shape[:1]:
        raise ValueError(f"expected history [B, L] and history_len [B], got {tuple(history.shape)} and "
                         f"{tuple(history_len.shape)}")


def _last(out: Tensor, history_len: Tensor) -> Tensor:
    """out [B, L, D] at position max(history_len - 1, 0) -> [B, D]."""
    index = (history_len - 1).clamp(min=0).to(out.device)
    return out[torch.arange(out.shape[0], device=out.device), index]


class _Block(nn.Module):
    """Post-norm transformer block as in SASRec/RecBole: causal multi-head attention, dropout, residual,
    layer norm; then linear -> GELU -> linear, dropout, residual, layer norm. [B, L, D] -> [B, L, D]."""

    def __init__(self, dim: int, num_heads: int, inner: int, dropout: float, attn_dropout: float,
                 eps: float) -> None:
        super().__init__()
        self.num_heads, self.attn_dropout = num_heads, attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ff1, self.ff2 = nn.Linear(dim, inner), nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0,
                                             is_causal=True)  # [B, H, L, D/H]
        x = self.norm1(x + self.dropout(self.proj(att.transpose(1, 2).reshape(b, n, d))))
        return self.norm2(x + self.dropout(self.ff2(F.gelu(self.ff1(x)))))


class SASRecEncoder(nn.Module):
    """SASRec (Kang & McAuley 2018) with RecBole's defaults: item + learned position (+ domain) embeddings,
    layer norm, dropout, ``num_layers`` causal self-attention blocks.

    num_tokens: item tokens incl. padding 0 (``HistoryIndex.num_tokens``); max_len: longest history;
    num_domains: > 1 adds a domain embedding (interleaved histories, ``history_scope: all``).
    """

    def __init__(self, num_tokens: int, dim: int = 64, max_len: int = 50, num_layers: int = 2, num_heads: int = 2,
                 dropout: float = 0.5, attn_dropout: float | None = None, inner: int | None = None,
                 num_domains: int = 1, layer_norm_eps: float = 1e-12, init_std: float = 0.02) -> None:
        super().__init__()
        if num_tokens < 2 or dim < 1 or max_len < 1 or num_layers < 0:
            raise ValueError(f"SASRecEncoder needs num_tokens >= 2, dim >= 1, max_len >= 1, num_layers >= 0; got "
                             f"{num_tokens}, {dim}, {max_len}, {num_layers}")
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"model.num_heads ({num_heads}) must divide model.embedding_dim ({dim})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        self.dim, self.max_len = dim, max_len
        self.item_embedding = nn.Embedding(num_tokens, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.domain_embedding = nn.Embedding(num_domains, dim) if num_domains > 1 else None
        self.norm = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        attn = dropout if attn_dropout is None else attn_dropout
        self.blocks = nn.ModuleList(_Block(dim, num_heads, inner or 4 * dim, dropout, attn, layer_norm_eps)
                                    for _ in range(num_layers))
        self.apply(lambda m: _init_normal(m, init_std))

    def forward_all(self, history: Tensor, history_domain: Tensor, history_len: Tensor) -> Tensor:
        """[B, L] tokens, [B, L] domain ids, [B] lengths -> [B, L, D] causal outputs (L <= max_len)."""
        _check(history, history_len)
        if history.shape[1] > self.max_len:
            raise ValueError(f"history has {history.shape[1]} columns, more than model.max_history={self.max_len}")
        positions = torch.arange(history.shape[1], device=history.device)
        x = self.item_embedding(history) + self.position_embedding(positions)
        if self.domain_embedding is not None:
            x = x + self.domain_embedding(history_domain)
        x = self.dropout(self.norm(x))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, history: Tensor, history_domain: Tensor, history_len: Tensor) -> Tensor:
        """-> [B, D]: the output at each history's last item."""
        return _last(self.forward_all(history, history_domain, history_len), history_len)


class GRU4RecEncoder(nn.Module):
    """GRU4Rec (Hidasi et al. 2016) as in RecBole: item (+ domain) embedding -> dropout -> GRU or LSTM
    (``cell``) -> linear projection back to ``dim`` (so outputs score against the item table)."""

    def __init__(self, num_tokens: int, dim: int = 64, hidden: int = 128, num_layers: int = 1, dropout: float = 0.3,
                 cell: str = "gru", num_domains: int = 1) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"model.cell must be gru or lstm, got {cell!r}")
        if num_tokens < 2 or dim < 1 or hidden < 1 or num_layers < 1:
            raise ValueError(f"GRU4RecEncoder needs num_tokens >= 2, dim, hidden, num_layers >= 1; got "
                             f"{num_tokens}, {dim}, {hidden}, {num_layers}")
        self.dim = dim
        self.item_embedding = nn.Embedding(num_tokens, dim, padding_idx=0)
        self.domain_embedding = nn.Embedding(num_domains, dim) if num_domains > 1 else None
        self.dropout = nn.Dropout(dropout)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(dim, hidden, num_layers=num_layers, bias=False, batch_first=True)
        self.proj = nn.Linear(hidden, dim)
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(p)

    def forward_all(self, history: Tensor, history_domain: Tensor, history_len: Tensor) -> Tensor:
        """[B, L] tokens, [B, L] domain ids, [B] lengths -> [B, L, D]; a one-directional recurrence over a
        right-padded history is causal, so padding never reaches a real position."""
        _check(history, history_len)
        x = self.item_embedding(history)
        if self.domain_embedding is not None:
            x = x + self.domain_embedding(history_domain)
        out, _ = self.rnn(self.dropout(x))
        return self.proj(out)

    def forward(self, history: Tensor, history_domain: Tensor, history_len: Tensor) -> Tensor:
        """-> [B, D]: the output at each history's last item."""
        return _last(self.forward_all(history, history_domain, history_len), history_len)


def _init_normal(module: nn.Module, std: float) -> None:
    """RecBole's SASRec init: N(0, std^2) weights for linear and embedding layers, zero biases, padding row 0."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
