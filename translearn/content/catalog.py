"""Per-domain item content (text, attributes, image paths) and the frozen features computed from it.

``ItemCatalog.of(prepared, cache_dir)`` collects what the item towers of a model may read about every
item of every domain of the prepared data; ``text_features`` turns it into pretrained sentence vectors,
and ``image_features`` into frozen image-backbone vectors, both cached by content hash (see
``translearn.content.feature_cache``)::

    catalog = ItemCatalog.of(prepared, cache_dir=".cache")
    feats = catalog.text_features("target", template="{text}. {attributes}")   # float32 [num_items, 384]
    pics = catalog.image_features("target")                                    # float32 [num_items, 1280]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from translearn.content import template as templates
from translearn.content import text as text_encoders
from translearn.content.feature_cache import FeatureCache, strings_digest
from translearn.data.sources.images import missing_images
from translearn.errors import ConfigError, UserError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from translearn.data.prepared import PreparedData

# (encoder name, texts, batch size) -> float32 [len(texts), F]; the default runs sentence-transformers
Encode = Callable[[str, Sequence[str], int], np.ndarray]


@dataclass(frozen=True)
class DomainItems:
    """The content of one domain's items, row i = item index i of the domain.

    item_ids:    [num_items] raw item ids (int64 or str)
    text:        [num_items] str (e.g. titles), or None when the data has no item text
    attributes:  [num_items] str (e.g. category path and brand), or None
    image_paths: [num_items] str, or None
    """

    name: str
    num_items: int
    item_ids: np.ndarray
    text: np.ndarray | None = None
    attributes: np.ndarray | None = None
    image_paths: np.ndarray | None = None

    def __post_init__(self) -> None:
        for key in ("item_ids", "text", "attributes", "image_paths"):
            values = getattr(self, key)
            if values is not None and len(values) != self.num_items:
                raise ValueError(f"DomainItems({self.name!r}).{key} has {len(values)} rows, "
                                 f"num_items is {self.num_items}")

    def column(self, name: str) -> np.ndarray | None:
        """A template field's values [num_items] (``text``, ``attributes``, ``item_id``), or None if absent."""
        return self.item_ids if name == "item_id" else getattr(self, name)


@dataclass
class ItemCatalog:
    """Item content of every domain, and the features computed from it (memoised, and cached on disk under
    ``<cache_dir>/features/`` when ``cache_dir`` is set).

    encode: replaces the sentence-transformers encoder (a stub in tests, another library); its qualified
            name and the encoder string enter the cache key (in place of the model's file digest), so its
            vectors never pass for another encoder's
    """

    domains: dict[str, DomainItems]
    cache_dir: Path | None = None
    encode: Encode | None = None
    # the largest share of a domain's items that may lack an image (no path, or no such file) before
    # ``image_features`` refuses (``data.max_missing_images``); those items get a zero image vector
    max_missing_images: float = 0.5
    _features: FeatureCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.cache_dir = None if self.cache_dir is None else Path(self.cache_dir)
        self._features = FeatureCache(self.cache_dir)

    @classmethod
    def of(cls, prepared: PreparedData, cache_dir: str | Path | None = None,
           encode: Encode | None = None, max_missing_images: float = 0.5) -> ItemCatalog:
        """The catalog of the prepared data's domains (sources first, then the target)."""
        domains = {}
        for name in prepared.domains:
            dom = prepared.data.domain(name)
            domains[name] = DomainItems(name, dom.num_items, dom.item_ids, dom.item_text, dom.item_attributes,
                                        dom.image_paths)
        return cls(domains, None if cache_dir is None else Path(cache_dir), encode, max_missing_images)

    def domain(self, name: str) -> DomainItems:
        if name not in self.domains:
            raise UserError(f"unknown domain {name!r}; the item catalog has: {', '.join(self.domains)}")
        return self.domains[name]

    def num_items(self, domain: str) -> int:
        return self.domain(domain).num_items

    def texts(self, domain: str, template: str = "{text}") -> list[str]:
        """The strings the encoder reads for ``domain``'s items ([num_items]): ``template`` filled per item.

        ``ConfigError`` naming ``model.content.text_template`` for a bad template, or one that uses a field the
        domain lacks (e.g. ``{text}`` on data without item text)."""
        items = self.domain(domain)
        columns = {}
        for name in templates.template_fields(template):
            values = items.column(name)
            if values is None:
                raise ConfigError(f"{templates.KEY}={template!r} uses {{{name}}}, but domain {domain!r} has no "
                                  f"item {name} (its data source gives none); use a template without it",
                                  config_key=templates.KEY)
            columns[name] = values
        return templates.render(template, columns)

    def text_features(self, domain: str, encoder: str | None = None, template: str = "{text}",
                      batch_size: int = 256) -> torch.Tensor:
        """float32 [num_items, F] frozen sentence vectors of ``domain``'s items, rows L2-normalised.

        encoder:  None (the bundled all-MiniLM-L6-v2, F = 384), a local model folder or a hub name
        template: which fields make each item's string (``{text}``, ``{attributes}``, ``{item_id}``)

        An item whose string is empty (no title) is encoded as the empty string, like any other: every such
        item of a domain gets the same vector, the encoder's vector for no words, so it is still ranked and
        its id embedding (if the model has one) tells it apart. Computed once per (encoder identity,
        template, exact strings): later calls, and other runs with a cache folder, read it back.
        """
        if batch_size < 1:
            raise ConfigError(f"model.text_batch_size: expected an integer >= 1, got {batch_size}",
                              config_key="model.text_batch_size")
        texts = self.texts(domain, template)
        name = text_encoders.resolve_encoder(encoder)
        encode = self.encode or text_encoders.encode_texts
        # an injected encoder is known by its qualified name and the encoder string it is given
        identity = {"name": name} if self.encode else text_encoders.encoder_identity(name)
        parts = {"kind": "text", "encoder": identity,
                 "encode": _qualified_name(encode), "template": template,
                 "strings": strings_digest(texts), "rows": len(texts), "normalised": True}

        def build() -> np.ndarray:
            return _normalised(np.asarray(encode(name, texts, batch_size), dtype=np.float32))

        features = self._features.get(parts, len(texts), build, what=f"text features of {domain!r}")
        return torch.from_numpy(features.copy())

    def image_features(self, domain: str, backbone: str = "efficientnet_lite0", weights: str | None = None,
                       allow_random: bool = False, image_size: int = 224, batch_size: int = 32) -> torch.Tensor:
        """float32 [num_items, F] frozen image-backbone features of ``domain``'s items (F = 1280 for the
        default EfficientNet-Lite0); an item without an image gets a zero row.

        backbone: ``efficientnet_lite0``, ``torchvision:<model>`` or ``timm:<model>`` (see
                  ``translearn.content.image``); weights: a local weights file (None: Lite0's packaged
                  ImageNet weights); random weights only with ``allow_random``.
        Computed once per (backbone identity, image size, paths, image file contents); later calls, and
        other runs with a cache folder, read it back.
        """
        from translearn.content.image_features import image_features

        items = self.domain(domain)
        if items.image_paths is None:
            raise ConfigError(f"model.content.item_tower: domain {domain!r} has no item images (its data source gives "
                              "none; see docs/data.md, item images)", config_key="model.content.item_tower")
        check_missing_images(items.image_paths, domain, self.max_missing_images)
        features = image_features(self._features, items.image_paths, backbone, weights, allow_random, image_size,
                                  batch_size, what=f"image features of {domain!r}")
        return torch.from_numpy(features.copy())


def _qualified_name(fn: Callable) -> str:
    """``module.qualname`` of a function, or of the class of a callable object."""
    owner = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{owner.__module__}.{owner.__qualname__}"


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; a row that is all zeros (an encoder that gives nothing) is an error,
    as it could not be normalised."""
    if vectors.ndim != 2:
        raise ValueError(f"the text encoder returned shape {tuple(vectors.shape)}, expected [num_items, F]")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"the text encoder returned {int((norms == 0).sum())} all-zero vector(s)")
    return vectors / norms


def check_missing_images(paths: np.ndarray, domain: str, limit: float) -> int:
    """Count the items of ``domain`` without an image (logged; they get a zero image vector) and refuse when
    their share exceeds ``limit`` (``data.max_missing_images``). Returns the count."""
    n = len(paths)
    missing = missing_images(paths)
    if not missing:
        return 0
    share = missing / max(n, 1)
    log.warning("image tower: %d of %d items of domain %r (%.1f%%) have no image and get a zero image vector "
                "(data.max_missing_images=%g)", missing, n, domain, 100 * share, limit)
    if share > limit:
        raise ConfigError(f"config key 'data.max_missing_images': {missing} of {n} items of domain {domain!r} "
                          f"({100 * share:.1f}%) have no image (no path, or no such file), more than the limit "
                          f"{limit:g}; fix the image paths (data.dataset.image_dir / image_column), or raise the "
                          "limit to train with zero vectors for them", config_key="data.max_missing_images")
    return missing
