"""What a trained strategy scores, in one place for evaluation and the tools.

In the target domain the strategy's own ``score_all`` / ``score_candidates`` (so a fusion or popularity
run is ranked, and recommends, as it was trained to score); in any other domain the model's tower.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from translearn.models.recommender import ItemScorer, Query, Recommender


def source_tower_missing(model: Recommender, domain: str) -> str | None:
    """Why ``model`` cannot rank the items of ``domain`` for its users, or None when it can (an item tower for
    the domain and, for a model that reads histories, the domain's items in its token table)."""
    if domain not in getattr(model, "item_encoders", {}):
        return f"the model has no item tower for {domain!r} (it has {', '.join(model.domains)})"
    if getattr(model, "needs_history", 0) and domain not in getattr(model, "history_domains", ()):
        return f"the model's histories hold no {domain!r} items (it reads {', '.join(model.history_domains)})"
    return None


def full_scores(strategy: Any, domain: str, query: Query, out: Tensor | None = None) -> Tensor:
    """[B, num_items(domain)] scores of every item of ``domain`` for the B queries (``out``: scratch memory)."""
    if domain == strategy.target_domain:
        return strategy.score_all(query, out=out)
    return strategy.model.score_all(domain, query, out=out)


def item_scorer(strategy: Any, domain: str, query: Query) -> ItemScorer | None:
    """``score(items, out=None)`` -> [B, K]: ``full_scores`` of a subset of the items of ``domain`` (a slice or
    long [K] indices), or None when the strategy scores only whole rows (``TransferStrategy.item_scorer``)."""
    if domain == strategy.target_domain:
        return strategy.item_scorer(query)
    return strategy.model.item_scorer(domain, query)


def candidate_scores(strategy: Any, domain: str, query: Query, items: Tensor) -> Tensor:
    """[B, C] scores of the items [B, C] of ``domain`` for the B queries."""
    if domain == strategy.target_domain:
        return strategy.score_candidates(query, items)
    return strategy.model.score(domain, query, items)
