"""The ``model.content`` node's key names, and the content keys that once lay directly under ``model``.

The nine item-content keys (``CONTENT_KEYS``, the fields of ``translearn.models.content.ContentSpec``) are one
node, ``model.content`` (``model.content.item_tower=text``). Before, each model config repeated them under
``model`` (``model.item_tower=text``): ``moved_key`` names the new key for an old one (the command line and
``check_config`` refuse an old key in one line), and ``lift_old_keys`` moves them into ``content`` in a run
config saved before the move, so ``translearn-eval``, the output tools and ``resume=`` read older runs.
No torch here: the config checks read it before the training stack is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from translearn.errors import ConfigError

NODE = "model.content"
CONTENT_KEYS = ("item_tower", "adaptor", "adaptor_experts", "text_encoder", "text_template", "id_text_mix",
                "image_backbone", "image_weights", "feature_norm")


def key(name: str) -> str:
    """The config key of a content setting: ``model.content.<name>``."""
    return f"{NODE}.{name}"


def moved_key(config_key: str) -> str | None:
    """``model.content.<name>`` for an old content key ``model.<name>`` (one of ``CONTENT_KEYS``), else None."""
    head, _, name = config_key.partition(".")
    return key(name) if head == "model" and name in CONTENT_KEYS else None


def moved_key_error(config_key: str, value: str | None = None) -> ConfigError:
    """The one-line refusal of an old content key (``model.item_tower``), naming the key that replaced it."""
    new = moved_key(config_key) or NODE
    example = f"; e.g. {new}={value}" if value is not None else ""
    return ConfigError(f"config key {config_key!r} moved to {new!r} (the content keys are one node, "
                       f"{NODE}){example}", config_key=config_key)


def check_no_old_keys(model: Mapping[str, Any] | None) -> None:
    """A ConfigError naming the first old content key found directly under the ``model`` node."""
    for name in model or ():
        if name in CONTENT_KEYS:
            raise moved_key_error(f"model.{name}", None)


def lift_old_keys(model: Any) -> list[str]:
    """Move old content keys (``item_tower``, ...) of a saved ``model`` node (a dict or DictConfig of a run
    made before ``model.content``) into its ``content`` node, in place; returns the keys moved. A node that
    already has ``content`` is left alone."""
    if model is None or "content" in model or "item_tower" not in model:
        return []
    old = [name for name in CONTENT_KEYS if name in model]
    content = {name: model[name] for name in old}
    for name in old:
        model.pop(name)
    model["content"] = content
    return old


def content_tower(model: Mapping[str, Any] | None) -> str:
    """``model.content.item_tower`` of a ``model`` config node (``id`` when it has no content node)."""
    content = (model or {}).get("content") or {}
    return str(content.get("item_tower", "id"))
