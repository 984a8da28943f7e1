"""PTUPCDR's meta network (Zhu et al., WSDM 2022): a user's source history -> a personalised bridge.

A user's characteristic vector is the attention-pooled mean of the (frozen) source item vectors of her
source history; a decoder turns it into a [D_s, D_t] matrix, the user's own bridge, which maps her source
vector into the target space: ``u_t = u_s @ W_u``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

PAD = -1  # an empty slot of a history row


def latest_items(users: np.ndarray, items: np.ndarray, order: np.ndarray | None, num_users: int,
                 max_len: int) -> np.ndarray:
    """int64 [num_users, max_len]: each user's ``max_len`` latest items (by ``order``, ties by row
    position; row position alone without ``order``), oldest first, right-padded with ``PAD``."""
    if max_len < 1:
        raise ValueError(f"strategy.max_history must be >= 1, got {max_len}")
    rows = np.arange(len(users))
    by = np.lexsort((rows, users)) if order is None else np.lexsort((rows, order, users))
    users, items = users[by], items[by]
    counts = np.bincount(users, minlength=num_users)
    end = np.cumsum(counts)[users]  # one past each row's user's last row
    from_end = end - 1 - np.arange(len(users))  # 0 for a user's latest row
    keep = from_end < max_len
    kept = np.minimum(counts, max_len)[users[keep]]
    slot = kept - 1 - from_end[keep]  # oldest kept row in slot 0
    out = np.full((num_users, max_len), PAD, dtype=np.int64)
    out[users[keep], slot] = items[keep]
    return out


class MetaBridge(nn.Module):
    """Personalised bridges from source histories.

    history:      int64 [U, L] each user's source items (``PAD`` for empty slots), a buffer
    item_vectors: [I_s, D_s] frozen source item vectors (the source stage's item tower), a buffer
    out_dim:      D_t, the target user vector size
    meta_dim:     hidden width of the decoder (the paper's code: 50)

    attention:  a_j = softmax_j( w^T relu(A e_j + b) ) over the user's non-empty slots
    characteristic(users [B]) -> p_u = sum_j a_j e_j                           [B, D_s] (0: empty history)
    bridge(users [B])         -> W_u = reshape(V2 relu(V1 p_u + c1) + c2)      [B, D_s, D_t]
    forward(source [B, D_s], users [B]) -> source_u @ W_u                     [B, D_t]
    """

    reads_users = True  # MappedUserEncoder passes the users along with their source vectors

    def __init__(self, history: Tensor, item_vectors: Tensor, out_dim: int, meta_dim: int = 50) -> None:
        super().__init__()
        if meta_dim < 1:
            raise ValueError(f"strategy.meta_dim must be >= 1, got {meta_dim}")
        in_dim = item_vectors.shape[1]
        self.in_dim, self.out_dim = in_dim, out_dim
        self.register_buffer("history", history.detach().clone().long())
        self.register_buffer("item_vectors", item_vectors.detach().clone())
        self.attention = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, 1, bias=False))
        self.decoder = nn.Sequential(nn.Linear(in_dim, meta_dim), nn.ReLU(), nn.Linear(meta_dim, in_dim * out_dim))

    def characteristic(self, users: Tensor) -> Tensor:
        """[B] users -> [B, D_s] attention-pooled source item vectors (zeros for an empty history)."""
        slots = self.history[users]  # [B, L]
        filled = slots != PAD
        vectors = self.item_vectors[slots.clamp(min=0)]  # [B, L, D_s]
        logits = self.attention(vectors).squeeze(-1).masked_fill(~filled, float("-inf"))  # [B, L]
        some = filled.any(dim=-1, keepdim=True)  # an empty row would be all -inf (NaN weights): weigh it 0
        weights = torch.softmax(torch.where(some, logits, torch.zeros_like(logits)), dim=-1) * filled
        return (weights.unsqueeze(-1) * vectors).sum(dim=1)

    def bridge(self, users: Tensor) -> Tensor:
        """[B] users -> [B, D_s, D_t] personalised bridge matrices."""
        return self.decoder(self.characteristic(users)).view(-1, self.in_dim, self.out_dim)

    def forward(self, source: Tensor, users: Tensor) -> Tensor:
        return torch.bmm(source.unsqueeze(1), self.bridge(users)).squeeze(1)
