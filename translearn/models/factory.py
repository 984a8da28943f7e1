"""Ready-made recommenders, built from data sizes plus a few hyperparameters (the ``model`` config group).

Configs give these with ``_partial_: true``; training fills in ``num_users``, ``num_items``, ``items``
(the ``ItemCatalog`` of the run's data: item text, attributes, images) and, for a factory that names it,
``context`` (``translearn.models.context.ModelContext``: also the training-only graphs and shared users).
``content`` (the ``model.content`` node: ``ContentSpec``, a mapping of its keys, or None for the id tower)
chooses the item towers (``model.content.item_tower``: ``id``, ``text``, ``id_text``, ``image``; see
``translearn.models.content``).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from translearn.errors import ConfigError
from translearn.models.content import ContentSpec, content_parts
from translearn.models.content_towers import ContentItemTower
from translearn.models.context import ModelContext
from translearn.models.encoders import BiasedIdEmbedding, IdEmbedding
from translearn.models.heads import DotHead, MLPHead
from translearn.models.recommender import Recommender


def item_towers(content: ContentSpec | Mapping[str, Any] | None, items: Any, num_items: Mapping[str, int], dim: int,
                init_std: float) -> tuple[dict[str, nn.Module], nn.Module | None, nn.Module | None]:
    """(towers per domain, shared adaptor or None, shared gate or None) for ``content.item_tower``."""
    spec = ContentSpec.of(content)
    parts = content_parts(spec, items, num_items, dim)
    if parts is None:
        return {d: IdEmbedding(n, dim, init_std) for d, n in num_items.items()}, None, None
    towers = {d: ContentItemTower(parts.features[d], parts.adaptor,
                                  IdEmbedding(int(n), dim, init_std) if spec.uses_ids else None, parts.gate)
              for d, n in num_items.items()}
    return towers, parts.adaptor, parts.gate


def matrix_factorization(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 64,
                         init_std: float = 0.01, bias: bool = False, items: Any = None,
                         content: ContentSpec | Mapping[str, Any] | None = None) -> Recommender:
    """MF: id embeddings for users (shared by all domains), item towers per domain, dot-product scores.

    ``bias=True`` adds a user and an item bias (``score = u . v + b_u + b_i``), the usual form for rating
    prediction (with ratings centred on the training mean, see ``NormaliseRatings(method="center")``); it
    needs the id item tower. ``content``: the item towers (``ContentSpec``, the ``model.content`` node).
    """
    spec = ContentSpec.of(content)
    if bias:
        if spec.uses_content:
            raise ConfigError(f"model.bias=true works with model.content.item_tower=id only, got "
                              f"model.content.item_tower={spec.item_tower}", config_key="model.bias")
        return Recommender(
            BiasedIdEmbedding(num_users, embedding_dim, "user", init_std),
            {d: BiasedIdEmbedding(n, embedding_dim, "item", init_std) for d, n in num_items.items()},
            DotHead(),
        )
    users = IdEmbedding(num_users, embedding_dim, init_std)
    towers, shared, gate = item_towers(spec, items, num_items, embedding_dim, init_std)
    return Recommender(users, towers, DotHead(), shared, gate)


def neural_cf(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 32,
              hidden_dims: Sequence[int] = (64, 32), dropout: float = 0.0, gmf: bool = True,
              init_std: float = 0.01, items: Any = None,
              content: ContentSpec | Mapping[str, Any] | None = None) -> Recommender:
    """NCF / NeuMF: id user embeddings, item towers per domain (``content``, as for MF), an MLP head over the
    concatenated vectors."""
    spec = ContentSpec.of(content)
    users = IdEmbedding(num_users, embedding_dim, init_std)
    towers, shared, gate = item_towers(spec, items, num_items, embedding_dim, init_std)
    return Recommender(users, towers, MLPHead(embedding_dim, hidden_dims, dropout, gmf), shared, gate)


def accepts(factory: Any, name: str) -> bool:
    """Whether ``factory`` (a function, class or ``functools.partial``) names a parameter ``name`` (a bare
    ``**kwargs`` does not count: it may pass its keywords on to code that does not expect this one)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params and params[name].kind is not inspect.Parameter.VAR_POSITIONAL


def declared_reads(factory: Any) -> frozenset[str]:
    """What the model a factory builds reads (``Recommender.reads``), known before it is built: a Recommender
    class's own, or that of the class a factory function's return annotation names (``-> BiTGCF``); empty when
    neither says (``-> Recommender`` declares nothing beyond the base's)."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type):
        built = factory
    else:
        try:
            built = typing.get_type_hints(factory).get("return")
        except Exception:  # an annotation that does not resolve declares nothing
            return frozenset()
    return frozenset(built.reads) if isinstance(built, type) and issubclass(built, Recommender) else frozenset()


def call_factory(factory: Any, items: Any = None, context: ModelContext | None = None, **kwargs: Any) -> Recommender:
    """``factory(**kwargs, items=items, context=context)``: ``items`` (the ``ItemCatalog``, default the
    context's) to a factory that names an ``items`` parameter, ``context`` (``ModelContext``: sizes, item
    catalogue, training-only graphs, shared users) to one that names ``context``; a factory without them
    (an older user factory) is called without them."""
    if items is None and context is not None:
        items = context.items
    if items is not None and accepts(factory, "items"):
        kwargs["items"] = items
    if context is not None and accepts(factory, "context"):
        kwargs["context"] = context
    return factory(**kwargs)
