"""Speed of the text encoder on real item titles: the first N Amazon Arts titles through
``ItemCatalog.text_features`` (the bundled all-MiniLM-L6-v2 unless --encoder), cold (encoded) and warm
(read back from the feature cache by a new catalog, as a second run would).

    .venv/bin/python experiments/bench/bench_text.py [--items 1000] [--threads 2] [--template "{text}"]
Prints one JSON line: items, seconds and items/s of each pass, the feature shape, the device.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from translearn.content import DomainItems, ItemCatalog
from translearn.content import text as text_encoders
from translearn.data.sources import AmazonArtsOffice

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "amazon-arts-office" / "raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default=None, help="model folder or hub name (default: bundled MiniLM)")
    parser.add_argument("--template", default="{text}")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--root", type=Path, default=DATA, help="the amazon-arts-office raw/ folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arts = AmazonArtsOffice(args.root).load().domain("arts")
    ids, titles, attrs = (a[:args.items] for a in (arts.item_ids, arts.item_text, arts.item_attributes))
    items = DomainItems("arts", len(ids), ids, titles, attrs)
    start = time.perf_counter()
    text_encoders.load_encoder(text_encoders.resolve_encoder(args.encoder))
    load = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache:
        passes = {}
        for name in ("cold", "warm"):
            catalog = ItemCatalog({"arts": items}, Path(cache))
            start = time.perf_counter()
            feats = catalog.text_features("arts", args.encoder, args.template, args.batch_size)
            seconds = time.perf_counter() - start
            passes[name] = {"seconds": round(seconds, 3), "items_per_s": round(len(ids) / seconds, 1)}
    words = float(np.mean([len(str(t).split()) for t in titles]))
    print(json.dumps({"items": len(ids), "mean_words": round(words, 1), "shape": list(feats.shape),
                      "device": text_encoders.default_device(), "threads": args.threads,
                      "model_load_s": round(load, 2), **passes}))


if __name__ == "__main__":
    main()
