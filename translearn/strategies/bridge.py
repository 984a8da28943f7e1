"""What carries knowledge from a source domain to the target: shared users, item content, or histories.

Every strategy declares in ``TransferStrategy.user_bridge`` what it needs when source and target share
no users (e.g. ``data.split=disjoint_users``, or two platforms):

- ``none``:    nothing crosses domains through users (target_only, popularity, source_only);
- ``content``: a user representation learned in one domain is read in the other (joint's shared user
  vectors, the fine-tuned start, a distillation teacher or fusion scorer that scores target users),
  so with no shared users the model needs another bridge: an **item-content tower**
  (``model.content.item_tower`` in ``text``, ``id_text``, ``image``: target items are placed by what the source
  taught the content adaptor) or a **sequence model** (sasrec, gru4rec: a user is her history, so a
  query needs no user id, and the sequence encoder's layers carry across; with id item towers the
  target's item vectors are still learned from the target alone);
- ``users``:   the strategy works on users with source data and nothing else can stand in for them
  (feature_reuse reuses each user's source vector, mapping maps it): it needs shared users.

``check_bridge`` is the one rule; ``build_strategy`` applies it from the config (before a source stage is
trained) and ``TransferStrategy`` applies it again from the model when built with ``facts``.
"""

from __future__ import annotations

from torch import nn

from translearn.data.facts import DataFacts
from translearn.errors import ConfigError

CONTENT_TOWERS = ("text", "id_text", "image")  # the values of model.content.item_tower that read item content
MODEL_CONTENT = "content"  # what ``model_item_tower`` calls a non-id tower that names no kind
BRIDGES = ("none", "content", "users")


def content_bridge(item_tower: str = "id", sequence: bool = False) -> str | None:
    """What stands in for shared users in a model: ``"item content"``, ``"histories"`` or None."""
    if item_tower in CONTENT_TOWERS or item_tower == MODEL_CONTENT:
        return "item content"
    return "histories" if sequence else None


def model_item_tower(model: nn.Module, domain: str) -> str:
    """``"id"`` when ``model``'s item tower of ``domain`` is an id table, else the model's declared
    ``item_tower`` (``"content"`` when it declares none: any other tower reads item features)."""
    from translearn.models.encoders import BiasedIdEmbedding, IdEmbedding
    from translearn.models.sequential import TiedItemTower

    tower = model.item_encoder(domain)
    if isinstance(tower, (IdEmbedding, BiasedIdEmbedding, TiedItemTower)):
        return "id"
    return str(getattr(model, "item_tower", MODEL_CONTENT))


def check_bridge(strategy: str, needs: str, facts: DataFacts, item_tower: str = "id",
                 sequence: bool = False) -> None:
    """Raise a one-line ConfigError when ``strategy`` (whose ``user_bridge`` is ``needs``) cannot transfer
    on this data: a source shares no training users with the target, and the model offers nothing that
    stands in for them (see the module docstring)."""
    if needs not in BRIDGES:
        raise ValueError(f"{strategy}.user_bridge must be one of {', '.join(BRIDGES)}, got {needs!r}")
    if needs == "none" or not facts.sources:
        return
    lonely = [s for s in facts.sources if facts.shared_users.get(s, 0) == 0]
    if needs == "users" and len(lonely) == len(facts.sources):
        raise ConfigError(f"{strategy} works on users with source data, but the target {facts.target!r} shares no "
                          f"users with {', '.join(map(repr, lonely))} (training rows); no model can stand in for "
                          "them: use joint or finetune with model.content.item_tower=text|id_text|image or a sequence "
                          "model, or target_only", config_key="strategy")
    if needs == "content" and lonely and content_bridge(item_tower, sequence) is None:
        raise ConfigError(f"{strategy} reads user vectors across domains, but the source {lonely[0]!r} and the "
                          f"target {facts.target!r} have no users in common (training rows) and the model has no "
                          f"content bridge (model.content.item_tower={item_tower!r}, not a sequence model); use "
                          "model.content.item_tower=text|id_text|image, a sequence model (sasrec, gru4rec), or "
                          "target_only",
                          config_key="strategy")
