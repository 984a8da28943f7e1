"""What the cold-start strategies (``mapping``, ``ptupcdr``) share: the user encoder they wrap and the
users they learn from.

Both keep a user's own target vector when she has target training data and score a cold-start user (none)
with a function of her source-stage vector; the function is learned on the overlapping users, who have
both (``translearn.models.reuse.MappedUserEncoder``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from translearn.data.facts import DataFacts
from translearn.models.recommender import Recommender
from translearn.models.reuse import MappedUserEncoder


def wrap_user_encoder(model: Recommender, source_model: Recommender | None, name: str,
                      make_mapper: Callable[[int, int], nn.Module]) -> MappedUserEncoder:
    """Replace ``model.user_encoder`` by a ``MappedUserEncoder`` over the stage's user vectors [U, F];
    ``make_mapper(F, D)`` builds the function. ``name`` is the strategy's, for the refusals."""
    if source_model is None:
        raise ValueError(f"{name} needs a source_model (the source stage, or strategy.source_ckpt)")
    own = model.user_encoder
    if not (hasattr(own, "num") and hasattr(own, "dim")):
        raise ValueError(f"{name} wraps an id-embedding user encoder (model=mf or model=ncf)")
    with torch.no_grad():
        source = source_model.user_vectors(torch.arange(own.num))
    model.user_encoder = MappedUserEncoder(own, source, make_mapper(source.shape[1], own.dim))
    return model.user_encoder


def overlap_users(facts: DataFacts, target: str, sources: Sequence[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """([U] bool has target training data, [U] bool has source training data); a ValueError when no user
    has both (nothing to learn the function from)."""
    has_target = facts.users_with_training_data([target])
    has_source = facts.users_with_training_data(list(sources))
    if not (has_target & has_source).any():
        raise ValueError(f"{name} needs users with both source data and target training data; there are none")
    return has_target, has_source


def mark_own_vectors(encoder: MappedUserEncoder, has_target_train: np.ndarray) -> None:
    """Users with target training data keep their own vector; the others are scored with the mapped one."""
    encoder.has_own.copy_(torch.from_numpy(has_target_train))

