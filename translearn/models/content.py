"""What an item tower is made of (the ``model.content`` node) and the frozen content features it reads.

Every model that can read item content takes one ``content`` argument, the ``model.content`` node of its
config (``conf/model/content/default.yaml``), parsed once by ``ContentSpec.of`` (``ContentSpec``, a mapping
of its keys, or None for the defaults). Towers (``model.content.item_tower``):

``id``       a trainable vector per item (the default; no content is read)
``text``     ``adaptor(text features)``: frozen sentence-encoder features [n, F] of each item's text
             (``model.content.text_encoder``, ``model.content.text_template``), mapped to the model's size D
``id_text``  an id vector plus ``adaptor(text features)``, mixed by ``model.content.id_text_mix``:
             ``sum``: ``e_i + a_i``; ``gate``: ``g * e_i + (1 - g) * a_i`` with ``g = sigmoid([e_i; a_i] M + c)``
``image``    ``adaptor(image features)`` (``items.image_features(domain, backbone, weights)``)

The adaptor (``model.content.adaptor``, see ``translearn.models.adaptors``) and the gate are ONE module each
for all domains, held by the recommender as ``content_adaptor`` and ``content_mix``.

The key names, and the handling of the keys that once lay directly under ``model`` (``model.item_tower``),
are in ``translearn.content_keys`` (no torch there: the config checks read it).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from translearn.content_keys import CONTENT_KEYS, NODE, key
from translearn.errors import ConfigError
from translearn.models.adaptors import ADAPTORS, make_adaptor

TOWERS = ("id", "text", "id_text", "image")
MIXES = ("sum", "gate")
FEATURE_NORMS = ("none", "centre", "standardise", "whiten")


class IdTextGate(nn.Module):
    """``g * ids + (1 - g) * content`` with a per-dimension gate ``g = sigmoid(Linear([ids; content]))``.
    ids, content [..., D] -> [..., D]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, ids: Tensor, content: Tensor) -> Tensor:
        g = torch.sigmoid(self.linear(torch.cat([ids, content], dim=-1)))
        return g * ids + (1.0 - g) * content


def mix(gate: nn.Module | None, ids: Tensor | None, content: Tensor) -> Tensor:
    """The tower's output from its parts: content alone, ``ids + content`` (sum), or the gate's mix."""
    if ids is None:
        return content
    return ids + content if gate is None else gate(ids, content)


@dataclass(frozen=True)
class ContentSpec:
    """The ``model.content`` node: the keys that choose an item tower (see the module docstring)."""

    item_tower: str = "id"
    adaptor: str = "linear"
    adaptor_experts: int = 8
    text_encoder: str | None = None
    text_template: str = "{text}"
    id_text_mix: str = "sum"
    image_backbone: str = "efficientnet_lite0"
    image_weights: str | None = None
    feature_norm: str = "none"

    def __post_init__(self) -> None:
        for name, value, allowed in (("item_tower", self.item_tower, TOWERS), ("adaptor", self.adaptor, ADAPTORS),
                                     ("id_text_mix", self.id_text_mix, MIXES),
                                     ("feature_norm", self.feature_norm, FEATURE_NORMS)):
            if value not in allowed:
                raise ConfigError(f"{key(name)}: expected one of {', '.join(allowed)}, got {value!r}",
                                  config_key=key(name))

    @classmethod
    def of(cls, content: ContentSpec | Mapping[str, Any] | None) -> ContentSpec:
        """``content`` (a factory's ``content`` argument: the ``model.content`` node) as a ``ContentSpec``;
        None gives the defaults (the id tower). An unknown key is a one-line ConfigError naming it."""
        if content is None:
            return cls()
        if isinstance(content, ContentSpec):
            return content
        if not isinstance(content, Mapping):
            raise ConfigError(f"{NODE}: expected a mapping of {', '.join(CONTENT_KEYS)}, got {content!r}",
                              config_key=NODE)
        unknown = [str(k) for k in content if k not in CONTENT_KEYS]
        if unknown:
            raise ConfigError(f"{key(unknown[0])}: not a content key; expected one of {', '.join(CONTENT_KEYS)}",
                              config_key=key(unknown[0]))
        return cls(**{str(k): content[k] for k in content})

    @property
    def uses_content(self) -> bool:
        return self.item_tower != "id"

    @property
    def uses_ids(self) -> bool:
        return self.item_tower in ("id", "id_text")

    def features(self, items: Any, domain: str, num_items: int) -> Tensor:
        """float32 [num_items, F] frozen features of ``domain``'s items, read from the catalog ``items``."""
        tower = f"{key('item_tower')}={self.item_tower}"
        if items is None:
            raise ConfigError(f"{tower} needs the item catalog (the model factory got items=None)",
                              config_key=key("item_tower"))
        known = getattr(items, "domains", {})
        if domain not in known:
            raise ConfigError(f"{tower}: the item catalog has no domain {domain!r} (it has: {', '.join(known)})",
                              config_key=key("item_tower"))
        info = known[domain]
        if self.item_tower == "image":
            feats = self._image(items, info, domain, tower)
        else:
            for name in _template_fields(self.text_template):
                if getattr(info, name, None) is None:
                    raise ConfigError(f"{tower}: domain {domain!r} has no item {name} ({key('text_template')}="
                                      f"{self.text_template!r}); use {key('item_tower')}=id or a data set with "
                                      "item text",
                                      config_key=key("item_tower"))
            feats = items.text_features(domain, self.text_encoder, self.text_template)
        feats = torch.as_tensor(feats, dtype=torch.float32).detach()
        if feats.dim() != 2 or feats.shape[0] != num_items:
            raise ValueError(f"content features of domain {domain!r} have shape {tuple(feats.shape)}, expected "
                             f"[{num_items}, F]")
        return feats

    def _image(self, items: Any, info: Any, domain: str, tower: str) -> Tensor:
        if getattr(info, "image_paths", None) is None:
            raise ConfigError(f"{tower}: domain {domain!r} has no item images; use {key('item_tower')}=id or "
                              "text",
                              config_key=key("item_tower"))
        image_features = getattr(items, "image_features", None)
        if image_features is None:
            raise ConfigError(f"{tower}: this item catalog computes no image features", config_key=key("item_tower"))
        return image_features(domain, backbone=self.image_backbone, weights=self.image_weights)


def _template_fields(template: str) -> list[str]:
    """The item fields (``text``, ``attributes``) a template reads; the catalog checks the template itself."""
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except (ValueError, TypeError):
        return []
    return [n for n in ("text", "attributes") if n in names]


@dataclass
class ContentParts:
    """Frozen features per domain ([n_d, F] each) and the shared trainable parts made for them."""

    features: dict[str, Tensor]
    adaptor: nn.Module
    gate: IdTextGate | None


def content_parts(spec: ContentSpec, items: Any, num_items: Mapping[str, int], dim: int) -> ContentParts | None:
    """Features of every domain of ``num_items`` and one adaptor (F -> ``dim``) for all of them; None for
    the id tower."""
    if not spec.uses_content:
        return None
    features = {d: normalise_features(spec.features(items, d, int(n)), spec.feature_norm)
                for d, n in num_items.items()}
    widths = {d: f.shape[1] for d, f in features.items()}
    if len(set(widths.values())) > 1:
        raise ValueError(f"content features differ in width across domains: {widths}")
    width = next(iter(widths.values()))
    gate = IdTextGate(dim) if spec.item_tower == "id_text" and spec.id_text_mix == "gate" else None
    return ContentParts(features, make_adaptor(spec.adaptor, width, dim, spec.adaptor_experts), gate)


def normalise_features(features: Tensor, kind: str, eps: float = 1e-6) -> Tensor:
    """One domain's frozen features [n, F], re-expressed by ``model.content.feature_norm``, statistics over its n items.

    ``none``: unchanged. ``centre``: ``x - mean``. ``standardise``: ``(x - mean) / std`` per dimension.
    ``whiten``: ``(x - mean) U diag(1 / sqrt(lambda + eps))``, the eigenvectors U and eigenvalues lambda of the
    covariance (decorrelated, unit variance, as BERT-whitening; it also lifts near-empty directions to unit
    variance). Sentence vectors are L2-normalised and anisotropic (Office titles: their mean vector has norm
    0.48, the mean cosine 0.24), so their differences are small: ``standardise`` scales rows from norm 1 to
    about sqrt(F), and under Adam a linear adaptor then moves its outputs about sqrt(F) times faster per step. The
    statistics read item content only, never interactions; each domain uses its own.
    """
    if kind == "none":
        return features
    if kind not in FEATURE_NORMS:
        raise ConfigError(f"{key('feature_norm')}: expected one of {', '.join(FEATURE_NORMS)}, got {kind!r}",
                          config_key=key("feature_norm"))
    x = features.double()
    centred = x - x.mean(0, keepdim=True)
    if kind == "centre":
        return centred.float()
    if kind == "standardise":
        out = centred / centred.std(0, keepdim=True).clamp_min(eps)
    else:
        cov = centred.T @ centred / max(x.shape[0] - 1, 1)
        values, vectors = torch.linalg.eigh(cov)
        out = centred @ (vectors / values.clamp_min(0).add(eps).sqrt())
    return out.float()


if tuple(f.name for f in fields(ContentSpec)) != CONTENT_KEYS:  # one list of the keys, read without torch
    raise ImportError("translearn.content_keys.CONTENT_KEYS differs from ContentSpec's fields")
