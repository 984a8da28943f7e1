"""Speed and memory of target-only SASRec on Amazon Office at the RecBole peer's SASRec settings.

Settings (../shared/tools/peer-recbole/configs/sasrec.yaml): hidden 64, 2 layers, 2 heads, inner 256,
dropout 0.5, history 50, full cross-entropy, Adam lr 0.001, batch 256 training rows (RecBole: 256
prefixes, one label each; ours: about 256 labelled positions, trained in one pass per sequence). Times
one training epoch (median over --epochs), one full-ranking test pass (median of --eval-runs) and the
process's peak RSS; with --peer, RecBole's SASRec for the same number of epochs, after ours, and the
ratios. Both report test NDCG@10 after those epochs, so speed is compared at the accuracy reached.

    .venv/bin/python experiments/bench/bench_sasrec.py [--peer] [--epochs 3] [--eval-runs 3]
Prints one JSON line per system, then the ratios.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import bench_peer, bench_translearn, ratios

OVERRIDES = ["data=arts_office", "strategy=target_only", "model=sasrec", "loss=ce", "data.sequence_batch_size=256",
             "optimizer.lr=0.001", "logger=none", "callbacks=none",
             "evaluation.metrics=[recall,ndcg,mrr,hr]"]  # RecBole's metric set, at 10 and 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--peer", action="store_true", help="also run RecBole SASRec (about 90 s per epoch)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed (autocast)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. data=synthetic")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ours = bench_translearn([*OVERRIDES, *args.overrides], args.epochs, args.eval_runs, args.device, args.precision)
    print(json.dumps(ours), flush=True)
    if args.peer and (peer := bench_peer("SASRec", args.epochs)):
        print(json.dumps(peer))
        print(json.dumps(ratios(ours, peer)))


if __name__ == "__main__":
    main()
