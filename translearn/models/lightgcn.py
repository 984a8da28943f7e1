"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation",
SIGIR 2020): id embeddings smoothed over each domain's training user-item graph.

For a domain with training matrix R [U, I] (binary, training rows only: ``ModelContext.graph``), the
bipartite adjacency A = [[0, R], [R^T, 0]] is normalised symmetrically, Â = D^-1/2 A D^-1/2 (D: node
degrees; a node without edges keeps a zero row). With E^(0) = [E_users; E_items] the ego embeddings,

    E^(k+1) = Â E^(k),   k = 0 .. K-1          (no weights, no non-linearity, no self-loop)
    E = sum_k alpha_k E^(k),  alpha_k = 1 / (K + 1)

and ``score(u, i) = e_u . e_i``. Training: BPR on (u, i, j) plus the paper's L2 term on the batch's ego
embeddings, ``reg_weight / 2 * (|e_u^(0)|^2 + |e_i^(0)|^2 + |e_j^(0)|^2) / B`` (``regularization``).

Encode once: ``encode(domain)`` propagates the whole graph once and keeps the result (``TableCache``)
until an optimiser step, a write to the embeddings, or the backward pass through it; a training step
(every score of every domain) and an evaluation pass (every batch) read one propagation.

Several domains (``strategy=joint``): the user table is shared; each domain propagates over its own graph,
so a user's vector depends on the predicted domain (``query_vectors(domain, query)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from translearn.errors import ConfigError
from translearn.models.content_towers import TableCache
from translearn.models.encoders import IdEmbedding
from translearn.models.heads import DotHead
from translearn.models.recommender import Query, Recommender, query_users


def normalized_adjacency(graph: Tensor) -> Tensor:
    """Â = D^-1/2 [[0, R], [R^T, 0]] D^-1/2 as a coalesced sparse COO [U + I, U + I], from R [U, I] (sparse,
    binary)."""
    graph = graph.coalesce()
    num_users, num_items = graph.shape
    users, items = graph.indices()
    values = graph.values().float()
    deg_u = torch.zeros(num_users).index_add_(0, users, values)
    deg_i = torch.zeros(num_items).index_add_(0, items, values)
    w = values / torch.sqrt(deg_u[users] * deg_i[items])  # every endpoint of an edge has degree >= 1
    rows = torch.cat([users, items + num_users])
    cols = torch.cat([items + num_users, users])
    n = num_users + num_items
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.cat([w, w]), (n, n),
                                   check_invariants=False).coalesce()


def init_tables(tables: Iterable[nn.Module], init_std: float | None) -> None:
    """Initialise each table's ``weight``: Xavier normal (std sqrt(2 / (rows + dim)), LightGCN's and BiTGCF's
    choice) when ``init_std`` is None, else N(0, init_std^2)."""
    for table in tables:
        if init_std is None:
            nn.init.xavier_normal_(table.weight)
        else:
            nn.init.normal_(table.weight, 0.0, init_std)


class Graph(nn.Module):
    """One domain's normalised adjacency, a non-persistent buffer (rebuilt from the data, never saved)."""

    def __init__(self, graph: Tensor) -> None:
        super().__init__()
        self.register_buffer("adjacency", normalized_adjacency(graph), persistent=False)
        self.num_users = graph.shape[0]


class LightGCN(Recommender):
    """See the module docstring. ``graphs``: {domain: training matrix R [num_users, num_items(domain)]};
    ``init_std``: None initialises every table with Xavier normal (std sqrt(2 / (rows + dim)), the paper's
    choice), a number with N(0, init_std^2)."""

    reads = frozenset({"graph"})

    def __init__(self, num_users: int, graphs: Mapping[str, Tensor], embedding_dim: int = 64,
                 num_layers: int = 3, reg_weight: float = 1e-4, init_std: float | None = None) -> None:
        if num_layers < 0:
            raise ValueError(f"model.num_layers must be >= 0, got {num_layers}")
        if reg_weight < 0:
            raise ValueError(f"model.reg_weight must be >= 0, got {reg_weight}")
        for d, g in graphs.items():
            if g.shape[0] != num_users:
                raise ValueError(f"the graph of domain {d!r} has {g.shape[0]} users, the model {num_users}")
        users = IdEmbedding(num_users, embedding_dim)
        items = {d: IdEmbedding(int(g.shape[1]), embedding_dim) for d, g in graphs.items()}
        init_tables((users, *items.values()), init_std)
        super().__init__(users, items, DotHead())
        self.graphs = nn.ModuleDict({d: Graph(g) for d, g in graphs.items()})
        self.num_layers, self.reg_weight = int(num_layers), float(reg_weight)
        self._tables = {d: TableCache() for d in graphs}

    def propagate(self, domain: str) -> Tensor:
        """[U + I, D]: the mean of the layer outputs E^(0) .. E^(K) over the domain's graph (no cache)."""
        ego = torch.cat([self.user_encoder.weight, self.item_encoder(domain).weight])
        adjacency = self.graphs[domain].adjacency
        out, x = ego, ego
        for _ in range(self.num_layers):
            x = torch.sparse.mm(adjacency, x)
            out = out + x
        return out / (self.num_layers + 1)

    def encode(self, domain: str) -> tuple[Tensor, Tensor]:
        """(users [U, D], items [I, D]) of ``domain``, propagated once and reused (see the module docstring)."""
        weights = [self.user_encoder.weight, self.item_encoder(domain).weight]
        table = self._tables[domain].get(weights, lambda: self.propagate(domain))
        return table[: self.user_encoder.num], table[self.user_encoder.num :]

    def query_vectors(self, domain: str, query: Query) -> Tensor:
        return self.encode(domain)[0][query_users(query)]

    def user_vectors(self, query: Query) -> Tensor:
        """[B, D] user vectors propagated over the first domain's graph (the target in a run's model)."""
        return self.query_vectors(self.domains[0], query)

    def item_vectors(self, domain: str, items: Tensor | None = None) -> Tensor:
        table = self.encode(domain)[1]
        return table if items is None else table[items]

    def regularization(self, domain: str, part: Mapping[str, Tensor]) -> Tensor | None:
        """``reg_weight / 2 * (|e_u|^2 + |e_pos|^2 + |e_neg|^2) / B`` over the batch's ego embeddings (the paper's
        L2 term, as in its code), or None without negatives or weight."""
        if not self.reg_weight or "negatives" not in part:
            return None
        users, pos, neg = part["users"], part["items"], part["negatives"]
        item_table = self.item_encoder(domain).weight
        total = (self.user_encoder.weight[users].pow(2).sum() + item_table[pos].pow(2).sum()
                 + item_table[neg].pow(2).sum())
        return self.reg_weight * 0.5 * total / len(users)

    def release(self) -> None:
        """Drop the propagated tables (the training step calls it after the loss; the backward pass also does)."""
        for cache in self._tables.values():
            cache.clear()


def lightgcn(num_users: int, num_items: Mapping[str, int], context: object = None, embedding_dim: int = 64,
             num_layers: int = 3, reg_weight: float = 1e-4, init_std: float | None = None) -> LightGCN:
    """LightGCN over the training graph of each domain in ``num_items`` (``context``: the ``ModelContext``)."""
    if context is None:
        raise ConfigError("model=lightgcn reads each domain's training graph: build it with "
                          "translearn.build.build_model, or pass context=ModelContext.of(prepared, domains)",
                          config_key="model")
    graphs = {d: context.graph(d) for d in num_items}
    for d, n in num_items.items():
        if graphs[d].shape != (num_users, int(n)):
            raise ValueError(f"the context's graph of {d!r} is {tuple(graphs[d].shape)}, the model needs "
                             f"({num_users}, {n})")
    return LightGCN(num_users, graphs, embedding_dim, num_layers, reg_weight, init_std)
