"""Item image features through the feature cache: the key, the checks, and one loaded backbone per process.

The cache key is what determines the vectors: the backbone's identity (name, library version, sha256 of
its weights file), the image size, the exact image paths and the sha256 of every image file's bytes (so a
replaced image, or one added where a file was missing, gives a new entry). Image files are hashed once per
process while their size and modification time stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from translearn.content import image as images
from translearn.content.feature_cache import FeatureCache, strings_digest
from translearn.errors import UserError

_LOADED: dict[str, images.ImageBackbone] = {}  # identity -> backbone on its device


def loaded_backbone(name: str | None, weights: str | Path | None, allow_random: bool) -> images.ImageBackbone:
    """The backbone, loaded once per process and identity, on the GPU when there is one."""
    import torch

    _, _, identity = images.resolve_backbone(name, weights, allow_random)
    if identity not in _LOADED:
        net, _ = images.load_image_backbone(name, weights, allow_random)
        _LOADED[identity] = net.to("cuda" if torch.cuda.is_available() else "cpu")
    return _LOADED[identity]


def image_features(cache: FeatureCache, paths: Sequence[object], backbone: str | None = images.DEFAULT,
                   weights: str | Path | None = None, allow_random: bool = False, image_size: int = 224,
                   batch_size: int = 32, what: str = "image features") -> np.ndarray:
    """float32 [len(paths), F] backbone features of the images at ``paths`` (zero rows for items without an
    image), from ``cache`` or computed and stored. UserError when not one path names an existing file
    (a wrong image folder, most likely)."""
    files = [str(p).strip() if images.has_image(p) else "" for p in paths]
    exists = [bool(f) and Path(f).is_file() for f in files]
    if files and not any(exists):
        named = next((f for f in files if f), None)
        detail = f"none of its image paths names an existing file (e.g. {named})" if named else "no item has an image"
        raise UserError(f"{what}: {detail}", file=named)
    _, _, identity = images.resolve_backbone(backbone, weights, allow_random)
    contents = [images.file_sha256(f) if ok else "" for f, ok in zip(files, exists, strict=True)]
    parts = {"kind": "image", "backbone": identity, "image_size": int(image_size), "rows": len(files),
             "paths": strings_digest(files), "files": strings_digest(contents)}

    def build() -> np.ndarray:
        return images.encode_images(files, loaded_backbone(backbone, weights, allow_random), image_size, batch_size)

    return cache.get(parts, len(files), build, what=what)
