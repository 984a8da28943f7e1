"""Ready-made recommenders, built from data sizes plus a few hyperparameters (the ``model`` config group).

Configs give these with ``_partial_: true``; training fills in ``num_users`` and ``num_items``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from translearn.models.encoders import BiasedIdEmbedding, IdEmbedding
from translearn.models.heads import DotHead, MLPHead
from translearn.models.recommender import Recommender


def matrix_factorization(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 64,
                         init_std: float = 0.01, bias: bool = False) -> Recommender:
    """MF: id embeddings for users (shared by all domains) and items (per domain), dot-product scores.

    ``bias=True`` adds a user and an item bias (``score = u . v + b_u + b_i``), the usual form for rating
    prediction (with ratings centred on the training mean, see ``NormaliseRatings(method="center")``).
    """
    if bias:
        return Recommender(
            BiasedIdEmbedding(num_users, embedding_dim, "user", init_std),
            {d: BiasedIdEmbedding(n, embedding_dim, "item", init_std) for d, n in num_items.items()},
            DotHead(),
        )
    return Recommender(
        IdEmbedding(num_users, embedding_dim, init_std),
        {d: IdEmbedding(n, embedding_dim, init_std) for d, n in num_items.items()},
        DotHead(),
    )


def neural_cf(num_users: int, num_items: Mapping[str, int], embedding_dim: int = 32,
              hidden_dims: Sequence[int] = (64, 32), dropout: float = 0.0, gmf: bool = True,
              init_std: float = 0.01) -> Recommender:
    """NCF / NeuMF: id embeddings and an MLP head over the concatenated user and item vectors."""
    return Recommender(
        IdEmbedding(num_users, embedding_dim, init_std),
        {d: IdEmbedding(n, embedding_dim, init_std) for d, n in num_items.items()},
        MLPHead(embedding_dim, hidden_dims, dropout, gmf),
    )
