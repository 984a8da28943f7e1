"""``Recommender``: one query encoder shared by all domains, one item encoder per domain, and a head.

A **query** is what a model may see about the users of a batch: a ``users [B]`` tensor, or a batch dict
with ``"users" [B]`` and, for models that read histories (``needs_history > 0``), ``"history" [B, L]``,
``"history_domain" [B, L]`` and ``"history_len" [B]`` (see ``translearn.data.history``). Id models read
the users; sequence models read the history. The query encoder keeps the name ``user_encoder`` so that
``strategy.freeze=[user_encoder]`` means the same for both. Models with content item towers
(``model.content.item_tower=text``, ...) also hold ``content_adaptor`` (and ``content_mix`` for a gated id+text
tower): one module shared by every domain's tower.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

Query = Tensor | Mapping[str, Tensor]
# scores of an item subset (a slice or long [K] indices) for a batch's queries: [B, K] (``out``: scratch memory)
ItemScorer = Callable[..., Tensor]


def query_users(query: Query) -> Tensor:
    """[B] user indices of a query (a users tensor or a batch dict)."""
    return query if isinstance(query, Tensor) else query["users"]


class Recommender(nn.Module):
    """Scores (query, item) pairs of a domain.

    score(domain, query, items [B] or [B, N]) -> [B] or [B, N]
    score_pos_neg(domain, query, pos [B], neg [B, N]) -> ([B], [B, N])
    score_all(domain, query, out=None) -> [B, num_items(domain)]
    """

    needs_history: int = 0  # history length the model reads (0: the user id only)
    # What the model reads of the data beyond user ids, declared here and nowhere else: "history" (queries
    # carry histories: the data module builds them), "graph" (its factory reads the training graphs of
    # ``ModelContext``), "paired" (training batches of shared users' rows in each domain), "sources" (it is
    # built over the target and the sources together and trains on every domain: a strategy that trains the
    # target alone refuses it).
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, user_encoder: nn.Module, item_encoders: Mapping[str, nn.Module], head: nn.Module,
                 content_adaptor: nn.Module | None = None, content_mix: nn.Module | None = None) -> None:
        super().__init__()
        if not item_encoders:
            raise ValueError("Recommender needs at least one item encoder")
        self.user_encoder = user_encoder
        self.item_encoders = nn.ModuleDict(dict(item_encoders))
        self.head = head
        # content towers (translearn.models.content_towers): ONE adaptor (and id/text gate) for all domains,
        # registered here so it is saved once and fine-tuning carries it across domains
        if content_adaptor is not None:
            self.content_adaptor = content_adaptor
        if content_mix is not None:
            self.content_mix = content_mix

    @property
    def domains(self) -> list[str]:
        return list(self.item_encoders)

    def item_encoder(self, domain: str) -> nn.Module:
        if domain not in self.item_encoders:
            raise KeyError(f"this model has no item tower for domain {domain!r}; it has: {', '.join(self.domains)}")
        return self.item_encoders[domain]

    def user_vectors(self, query: Query) -> Tensor:
        """[B, D] query vectors (id models: the user embeddings)."""
        return self.user_encoder(query_users(query))

    def query_vectors(self, domain: str, query: Query) -> Tensor:
        """[B, D] query vectors for scoring items of ``domain`` (the same for every domain unless a model
        encodes a query per predicted domain, as the two-view sequence encoder does)."""
        return self.user_vectors(query)

    def item_vectors(self, domain: str, items: Tensor | None = None) -> Tensor:
        """[..., D] vectors of ``items``, or [num_items, D] of every item when ``items`` is None."""
        enc = self.item_encoder(domain)
        return enc.all() if items is None else enc(items)

    def score(self, domain: str, query: Query, items: Tensor) -> Tensor:
        return self.head.score(self.query_vectors(domain, query), self.item_vectors(domain, items))

    def score_pos_neg(self, domain: str, query: Query, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
        """Scores of positives [B] and negatives [B, N]; queries are encoded once and items in one lookup
        (one gradient for the item table instead of two)."""
        scores = self.head.score(self.query_vectors(domain, query),
                                 self.item_vectors(domain, torch.cat([pos.unsqueeze(1), neg], dim=1)))
        return scores[:, 0], scores[:, 1:]

    def score_all(self, domain: str, query: Query, out: Tensor | None = None) -> Tensor:
        return self.head.score_all(self.query_vectors(domain, query), self.item_vectors(domain), out=out)

    def item_scorer(self, domain: str, query: Query) -> ItemScorer:
        """``score(items, out=None)`` -> [B, K]: the ``score_all`` scores of the items ``items`` (a slice or
        long [K] indices) of ``domain`` for the B queries, with the queries encoded once (full ranking over
        item chunks, ``translearn.evaluation.Evaluator``)."""
        queries, table = self.query_vectors(domain, query), self.item_vectors(domain)
        return lambda items, out=None: self.head.score_all(queries, table[items], out=out)

    def regularization(self, domain: str, part: Mapping[str, Tensor]) -> Tensor | None:
        """A model's own penalty on a training part of ``domain`` (e.g. LightGCN's L2 on the batch's ego
        embeddings), added to that domain's loss; None: none."""
        return None
