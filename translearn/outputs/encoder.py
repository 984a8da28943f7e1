"""``translearn-features --encoder``: a pretrained encoder's item vectors, with no trained run.

The items of every domain of ``cfg.data`` go through the content encoder a model would freeze
(``model.content.text_encoder`` / ``text_template`` for text, ``model.content.image_backbone`` /
``image_weights`` for images; the same feature cache, so a later run or export reads them back), and are written in the
layout of ``export_features``: ``items_<domain>.npy`` (float32 [num_items, F]), ``items_<domain>.parquet``
(raw ids) and ``features.json``. The composed config is saved as ``<out>/.hydra/config.yaml``, so
``translearn-probe <out>`` rebuilds the same data to read item attributes from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from translearn.cache import atomic_write_file, atomic_write_json
from translearn.outputs.features import MANIFEST, _npy, _parquet
from translearn.outputs.run import OutputError

log = logging.getLogger(__name__)
KINDS = ("text", "image")
NO_USERS = "a pretrained item encoder has no user vectors (train a run to get them)"


def encoder_features(cfg: DictConfig, kind: str = "text", domains: list[str] | None = None
                     ) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """(prepared data, {domain: float32 [num_items, F]}, a description of the encoder) for ``cfg``'s data."""
    from translearn.build import build_run_data
    from translearn.content import text as text_encoders
    from translearn.content.catalog import ItemCatalog
    from translearn.models.content import ContentSpec

    if kind not in KINDS:
        raise OutputError(f"--encoder: expected one of {', '.join(KINDS)}, got {kind!r}")
    prepared = build_run_data(cfg)
    catalog = ItemCatalog.of(prepared, cfg.paths.cache_dir,
                             max_missing_images=float(cfg.data.get("max_missing_images", 0.5)))
    unknown = [d for d in domains or () if d not in prepared.domains]
    if unknown:
        raise OutputError(f"--domain: unknown domain(s) {', '.join(map(repr, unknown))}; the data has "
                          f"{', '.join(prepared.domains)}")
    spec = ContentSpec.of(cfg.model.get("content"))
    if kind == "text":
        name = text_encoders.resolve_encoder(spec.text_encoder)
        template = spec.text_template
        about = {"kind": "text", "encoder": name, "identity": text_encoders.encoder_identity(name),
                 "template": template}

        def encode(domain: str) -> np.ndarray:
            return catalog.text_features(domain, name, template).numpy()
    else:
        backbone, weights = spec.image_backbone, spec.image_weights
        about = {"kind": "image", "encoder": backbone, "weights": None if weights is None else str(weights)}

        def encode(domain: str) -> np.ndarray:
            return catalog.image_features(domain, backbone, None if weights is None else str(weights)).numpy()
    vectors = {domain: encode(domain) for domain in (domains or prepared.domains)}
    return prepared, vectors, about


def export_encoder_features(cfg: DictConfig, out: str | Path, kind: str = "text",
                            domains: list[str] | None = None) -> dict[str, Any]:
    """Write the encoder's item vectors of ``domains`` (default: all of the data's) into ``out``; returns
    what ``features.json`` holds."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out: {out} is a file, not a folder")
    prepared, vectors, about = encoder_features(cfg, kind, domains)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / ".hydra" / "config.yaml"
    saved.parent.mkdir(exist_ok=True)
    atomic_write_file(saved, lambda f: f.write(OmegaConf.to_yaml(cfg).encode()))
    manifest: dict[str, Any] = {"run": str(out.resolve()), "checkpoint": None, "model": f"{kind} encoder",
                                "family": "encoder", "encoder": about, "target": prepared.target,
                                "data_key": prepared.key, "domains": {}, "users": None, "users_note": NO_USERS}
    for domain, table in vectors.items():
        _npy(out / f"items_{domain}.npy", table)
        _parquet(out / f"items_{domain}.parquet", "item_id", prepared.data.domain(domain).item_ids, table)
        manifest["domains"][domain] = {"items": int(table.shape[0]), "dim": int(table.shape[1]),
                                       "npy": f"items_{domain}.npy", "parquet": f"items_{domain}.parquet"}
        log.info("%s encoder, items of %s: %d x %d", kind, domain, *table.shape)
    atomic_write_json(out / MANIFEST, manifest)
    return manifest
