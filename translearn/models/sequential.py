"""Sequence recommenders (SASRec, GRU4Rec): the query is the user's history, items are tied to the input table.

A ``SequenceRecommender`` holds one sequence encoder (``user_encoder``: SASRec or GRU4Rec from
``translearn.models.sequence``) over a token table that covers every domain of ``history_domains``
(token ``offset_d + i + 1`` is item ``i`` of domain ``d``, 0 is padding, as in ``HistoryIndex``), and one
item tower per domain that is a slice of that same table (tied input and output embeddings). Scores
are dot products.

Under ``history_scope='all'`` the encoder is by default a ``DualViewEncoder`` (``own_view=True``): the
predicted domain's own items and the interleaved history, mixed by a gate that starts at 0; queries are
then encoded per predicted domain (``query_vectors(domain, query)``).

Training reads one-pass sequence batches (``translearn.data.sequence_batches``): the output at every
position ``j`` predicts ``labels[:, j]`` in the label's domain, so one forward trains every prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from translearn.models.content import ContentSpec, content_parts
from translearn.models.content_towers import ContentTokenTable
from translearn.models.dual_view import DualViewEncoder
from translearn.models.heads import DotHead
from translearn.models.recommender import Query, Recommender
from translearn.models.sequence import GRU4RecEncoder, SASRecEncoder

HISTORY_SCOPES = ("target", "all")


class TiedItemTower(nn.Module):
    """Item vectors of one domain read from a shared token table (no parameters of its own).

    table: the encoder's token table (``nn.Embedding [num_tokens, D]`` or ``ContentTokenTable``); items ``i``
    map to rows ``offset + i + 1``.
    forward(items [...]) -> [..., D]; all() -> [num, D].
    """

    def __init__(self, table: nn.Module, offset: int, num: int) -> None:
        super().__init__()
        self._table = [table]  # a plain list: the table stays registered (and saved) under the encoder only
        self.offset, self._num, self.dim = offset, num, table.embedding_dim

    @property
    def num(self) -> int:
        return self._num

    def forward(self, items: Tensor) -> Tensor:
        return self._table[0](items + self.offset + 1)

    def all(self) -> Tensor:
        return self._table[0].weight[self.offset + 1 : self.offset + 1 + self._num]


class SequenceRecommender(Recommender):
    """A recommender whose query is a history (see the module docstring).

    encoder:         SASRecEncoder / GRU4RecEncoder with ``item_embedding`` [num_tokens, D]
    history_domains: domains of the token table, in token order (``HistoryIndex`` uses the same order)
    num_items:       items per domain
    max_history:     the longest history the model reads (the data module cuts queries to it)
    history_scope:   ``target`` (the target domain's own history) or ``all`` (interleaved domains)
    content_adaptor, content_mix: the shared parts of a ``ContentTokenTable`` (content item towers), or None
    """

    preferred_loss = "ce"
    reads = frozenset({"history"})

    def __init__(self, encoder: nn.Module, history_domains: Sequence[str], num_items: Mapping[str, int],
                 max_history: int, history_scope: str = "target", content_adaptor: nn.Module | None = None,
                 content_mix: nn.Module | None = None) -> None:
        offsets, start = {}, 0
        for d in history_domains:
            offsets[d], start = start, start + int(num_items[d])
        if encoder.item_embedding.num_embeddings != start + 1:
            raise ValueError(f"the encoder's token table has {encoder.item_embedding.num_embeddings} rows, the "
                             f"domains {list(history_domains)} need {start + 1}")
        towers = {d: TiedItemTower(encoder.item_embedding, offsets[d], int(num_items[d])) for d in history_domains}
        super().__init__(encoder, towers, DotHead(), content_adaptor, content_mix)
        self.history_domains = tuple(history_domains)
        self.history_scope = history_scope
        self.needs_history = int(max_history)
        self.per_domain = isinstance(encoder, DualViewEncoder)  # queries encoded per predicted domain
        self._encoded: tuple[dict, dict[str, Tensor]] | None = None

    def _encode(self, domain: str, *inputs: Tensor, all_positions: bool = False) -> Tensor:
        run = self.user_encoder.forward_all if all_positions else self.user_encoder
        if self.per_domain:
            return run(*inputs, domain=self.history_domains.index(domain))
        return run(*inputs)

    def query_vectors(self, domain: str, query: Query) -> Tensor:
        """[B, D]: the encoder's output at each query's last history item (for predicting ``domain``)."""
        if isinstance(query, Tensor) or "history" not in query:
            raise ValueError("a sequence model scores queries with a history (history, history_domain, "
                             "history_len), not user ids alone")
        return self._encode(domain, query["history"], query["history_domain"], query["history_len"])

    def user_vectors(self, query: Query) -> Tensor:
        """[B, D] query vectors for the first history domain (the target in a run's model)."""
        return self.query_vectors(self.history_domains[0], query)

    def positions(self, part: Mapping[str, Tensor], domain: str | None = None) -> Tensor:
        """[B, L, D] outputs at every position of a training batch (for predicting ``domain``, default the
        first history domain); computed once per batch and domain (a joint loss reads the same forward
        for each domain's labels when the encoder has one view)."""
        domain = domain or self.history_domains[0]
        key = domain if self.per_domain else ""
        if self._encoded is None or self._encoded[0] is not part:
            self._encoded = (part, {})
        cached = self._encoded[1]
        if key not in cached or not torch.is_grad_enabled():
            h = self._encode(domain, part["history"], part["history_domain"], part["history_len"],
                             all_positions=True)
            if not torch.is_grad_enabled():
                return h
            cached[key] = h
        return cached[key]

    def labelled(self, domain: str, part: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(outputs [N, D], labels [N]) at the positions whose label is an item of ``domain``."""
        keep = (part["labels"] >= 0) & (part["label_domain"] == self.history_domains.index(domain))
        return self.positions(part, domain)[keep], part["labels"][keep]

    def release(self) -> None:
        """Drop the cached forward and token table (called after each training step)."""
        self._encoded = None
        table = self.user_encoder.item_embedding
        if isinstance(table, ContentTokenTable):
            table.release()


def _domains(num_items: Mapping[str, int], history_domains: Sequence[str] | None) -> list[str]:
    order = list(history_domains) if history_domains else list(num_items)
    unknown = [d for d in order if d not in num_items]
    if unknown:
        raise ValueError(f"history domains {unknown} have no item count; known: {', '.join(num_items)}")
    return order


def _check_scope(history_scope: str) -> None:
    if history_scope not in HISTORY_SCOPES:
        raise ValueError(f"model.history_scope must be one of {', '.join(HISTORY_SCOPES)}, got {history_scope!r}")


def sasrec(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 64, max_history: int = 50,
           num_layers: int = 2, num_heads: int = 2, dropout: float = 0.5, inner_size: int = 256,
           history_scope: str = "target", own_view: bool = True, init_std: float = 0.02,
           history_domains: Sequence[str] | None = None, items: Any = None,
           content: ContentSpec | Mapping[str, Any] | None = None) -> SequenceRecommender:
    """SASRec over the domains' items (``num_users`` is unused: users are their histories).

    Defaults follow RecBole's published SASRec defaults (hidden 64, 2 layers, 2 heads, inner 256,
    dropout 0.5, history 50). ``history_scope='all'`` adds a domain embedding for interleaved histories
    and, with ``own_view`` (default), a second encoder over the predicted domain's own items
    (``DualViewEncoder``); ``own_view=False`` reads the interleaved history alone. ``content`` (``ContentSpec``,
    the ``model.content`` node) makes the token table from item content (``ContentTokenTable``).
    """
    _check_scope(history_scope)
    domains = _domains(num_items, history_domains)

    def encoder() -> SASRecEncoder:
        return SASRecEncoder(1 + sum(int(num_items[d]) for d in domains), dim=embedding_dim, max_len=max_history,
                             num_layers=num_layers, num_heads=num_heads, dropout=dropout, inner=inner_size,
                             num_domains=len(domains) if history_scope == "all" else 1, init_std=init_std)

    return _recommender(_views(encoder, history_scope, own_view), domains, num_items, max_history, history_scope,
                        ContentSpec.of(content), items, embedding_dim)


def gru4rec(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 64, hidden_size: int = 128,
            num_layers: int = 1, dropout: float = 0.3, cell: str = "gru", max_history: int = 50,
            history_scope: str = "target", own_view: bool = True,
            history_domains: Sequence[str] | None = None, items: Any = None,
            content: ContentSpec | Mapping[str, Any] | None = None) -> SequenceRecommender:
    """GRU4Rec (RecBole's defaults: embedding 64, hidden 128, 1 layer, dropout 0.3); ``cell: gru | lstm``.
    ``history_scope``, ``own_view`` and ``content`` as for ``sasrec``."""
    _check_scope(history_scope)
    domains = _domains(num_items, history_domains)

    def encoder() -> GRU4RecEncoder:
        return GRU4RecEncoder(1 + sum(int(num_items[d]) for d in domains), dim=embedding_dim, hidden=hidden_size,
                              num_layers=num_layers, dropout=dropout, cell=cell,
                              num_domains=len(domains) if history_scope == "all" else 1)

    return _recommender(_views(encoder, history_scope, own_view), domains, num_items, max_history, history_scope,
                        ContentSpec.of(content), items, embedding_dim)


def _views(encoder: Callable[[], nn.Module], history_scope: str, own_view: bool) -> nn.Module:
    """One encoder, or (interleaved histories with ``own_view``) a ``DualViewEncoder`` of two."""
    if history_scope == "all" and own_view:
        return DualViewEncoder(encoder(), encoder())
    return encoder()


def _recommender(view: nn.Module, domains: list[str], num_items: Mapping[str, int], max_history: int,
                 history_scope: str, spec: ContentSpec, items: Any, dim: int) -> SequenceRecommender:
    """The ``SequenceRecommender`` over ``view``; with a content tower, its token table is replaced by a
    ``ContentTokenTable`` over the domains' features (in token order), shared by both views."""
    parts = content_parts(spec, items, {d: num_items[d] for d in domains}, dim)
    if parts is None:
        return SequenceRecommender(view, domains, num_items, max_history, history_scope)
    features = torch.cat([parts.features[d] for d in domains])  # [num_tokens - 1, F]
    table = ContentTokenTable(features, parts.adaptor, view.item_embedding if spec.uses_ids else None, parts.gate)
    for encoder in (view.own, view.mixed) if isinstance(view, DualViewEncoder) else (view,):
        encoder.item_embedding = table
    return SequenceRecommender(view, domains, num_items, max_history, history_scope, parts.adaptor, parts.gate)
