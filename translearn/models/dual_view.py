"""Two views of an interleaved history: the predicted domain's own items, and every domain's items.

Feeding a single-domain sequence model the naive interleaved Arts+Office history loses more than half of
its accuracy on Office (experiments/README.md, section 5): the source items crowd the target items, and
under ``target_only`` their embeddings learn only as inputs. Cross-domain sequence models (C2DSR,
Tri-CDR) keep a domain-specific view beside the mixed one. ``DualViewEncoder`` does that:

    out(j, d) = own(history of domain d's items up to j) + gate * mixed(interleaved history up to j)

``own`` and ``mixed`` are two encoders of the same kind (SASRec or GRU4Rec blocks) sharing one token
table; ``gate`` is a learned scalar that starts at 0, so training starts from the single-domain model and
the mixed view enters only as far as the training loss finds it useful. A position with no item of
domain ``d`` before it has an own view of 0 (only the mixed view speaks for it).

Shapes as in ``translearn.models.sequence``: history, history_domain [B, L], history_len [B] -> [B, L, D]
(``forward_all``) or [B, D] (``forward``, the output at each history's last item). Causal, like both views.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def own_items(history: Tensor, history_domain: Tensor, history_len: Tensor, domain: int
              ) -> tuple[Tensor, Tensor, Tensor]:
    """The items of ``domain`` in each history, in order, right-padded.

    Returns (own_history [B, W], own_len [B], own_index [B, L]): ``own_index[b, j]`` is the position in the
    own view of the latest own item at or before position j (-1 if none yet). W = the longest own view.
    """
    b, n = history.shape
    real = torch.arange(n, device=history.device).unsqueeze(0) < history_len.unsqueeze(1)
    mine = real & (history_domain == domain)
    own_len = mine.sum(1)
    width = max(1, int(own_len.max().item()) if b else 1)
    # a stable sort that moves own items to the front keeps their order
    order = torch.sort((~mine).to(torch.int8), dim=1, stable=True).indices[:, :width]
    own_history = torch.gather(history, 1, order)
    own_history = torch.where(torch.arange(width, device=history.device) < own_len.unsqueeze(1), own_history,
                              torch.zeros_like(own_history))
    own_index = torch.cumsum(mine.to(torch.int64), dim=1) - 1
    return own_history, own_len, own_index


class DualViewEncoder(nn.Module):
    """``own`` + ``gate`` * ``mixed`` over one interleaved history (see the module docstring).

    own, mixed: encoders with ``item_embedding``, ``forward_all(history, history_domain, history_len)``;
    ``mixed`` is made to read ``own``'s token table.
    """

    def __init__(self, own: nn.Module, mixed: nn.Module) -> None:
        super().__init__()
        self.own, self.mixed = own, mixed
        self.mixed.item_embedding = own.item_embedding  # one token table (tied to the output towers)
        self.gate = nn.Parameter(torch.zeros(()))
        self.dim = own.dim

    @property
    def item_embedding(self) -> nn.Embedding:
        return self.own.item_embedding

    def forward_all(self, history: Tensor, history_domain: Tensor, history_len: Tensor, domain: int = 0) -> Tensor:
        """[B, L] tokens, [B, L] domain ids, [B] lengths; ``domain``: the id of the domain predicted
        -> [B, L, D]."""
        own_history, own_len, own_index = own_items(history, history_domain, history_len, domain)
        own_out = self.own.forward_all(own_history, torch.full_like(own_history, domain), own_len)  # [B, W, D]
        picked = torch.gather(own_out, 1, own_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, own_out.shape[-1]))
        picked = picked * (own_index >= 0).unsqueeze(-1).to(picked.dtype)
        return picked + self.gate * self.mixed.forward_all(history, history_domain, history_len)

    def forward(self, history: Tensor, history_domain: Tensor, history_len: Tensor, domain: int = 0) -> Tensor:
        """-> [B, D]: the output at each history's last item."""
        out = self.forward_all(history, history_domain, history_len, domain)
        index = (history_len - 1).clamp(min=0)
        return out[torch.arange(out.shape[0], device=out.device), index]
