"""Synthetic data with one generated picture per item (``data=synthetic_images``): the image counterpart
of the synthetic item text, for running image item towers end to end without real images.

An item's picture follows its latent factors ``q`` (``SyntheticSource.item_factors``): the background
colour is ``255 * sigmoid(1.5 q[0:3])``, and stripes at angle ``pi * sigmoid(q[3])`` with
``1 + 4 sigmoid(q[4])`` cycles across the picture modulate it (missing factors count as 0). Items with
close factors look alike, so image features carry what the interactions are driven by.

The pictures are derived data, like a cache: written once under ``<image_dir>/<key>/<domain>/<item>.png``
(temp folder, then rename), where the key covers the generator's knobs and the picture size.
``fingerprint()`` makes sure they exist, so prepared data read from the cache never points at missing files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from translearn.data.schema import CrossDomainData
from translearn.data.sources.synthetic import SyntheticSource

VERSION = 1  # bump when the pictures drawn for the same factors change


def factor_picture(q: np.ndarray, size: int) -> np.ndarray:
    """uint8 [size, size, 3] RGB picture of one item's factors ``q`` [k]."""
    f = np.zeros(5)
    f[: min(5, len(q))] = q[:5]
    sig = 1.0 / (1.0 + np.exp(-f))
    colour = 255.0 / (1.0 + np.exp(-1.5 * f[:3]))
    angle, cycles = np.pi * sig[3], 1.0 + 4.0 * sig[4]
    y, x = np.mgrid[0:size, 0:size] / size
    stripes = np.sin(2 * np.pi * cycles * (x * np.cos(angle) + y * np.sin(angle)))
    pixels = colour * (0.65 + 0.35 * stripes[..., None])
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


class SyntheticImages:
    """``SyntheticSource(**knobs)`` plus ``Domain.image_paths``: a ``image_size``-pixel PNG per item in
    ``image_dir``."""

    def __init__(self, image_dir: str | Path, image_size: int = 32, **knobs: Any) -> None:
        if image_size < 8:
            raise ValueError(f"data.dataset.image_size must be >= 8 pixels, got {image_size}")
        self.source = SyntheticSource(**knobs)
        self.image_dir, self.image_size = Path(image_dir).expanduser().absolute(), int(image_size)

    def _key(self) -> str:
        text = f"synthetic-images|{VERSION}|{self.image_size}|{self.source.fingerprint()}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def folder(self) -> Path:
        """Where this source's pictures are: ``<image_dir>/<key>``."""
        return self.image_dir / self._key()

    def fingerprint(self) -> str:
        self._ensure_pictures()
        return hashlib.sha256(f"{self._key()}|{self.folder()}".encode()).hexdigest()

    def load(self) -> CrossDomainData:
        data = self.source.load()
        folder = self._ensure_pictures()
        domains = {}
        for name, dom in data.domains.items():
            paths = np.array([str(folder / name / f"{int(i)}.png") for i in dom.item_ids], dtype=object)
            domains[name] = replace(dom, image_paths=paths)
        return data.replace_domains(domains)

    def _ensure_pictures(self) -> Path:
        """Write every item's picture unless the folder is already complete (it appears in one rename)."""
        final = self.folder()
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        try:
            from PIL import Image

            for name, factors in self.source.item_factors().items():
                (tmp / name).mkdir()
                for item, q in enumerate(factors):  # synthetic raw item ids are 0..n-1
                    Image.fromarray(factor_picture(q, self.image_size)).save(tmp / name / f"{item}.png")
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():  # another process finished first: keep its pictures
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final
