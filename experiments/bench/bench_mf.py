"""Speed and memory of target-only MF-BPR on Amazon Office (the RecBole peer's settings).

Times, in this process: one training epoch (median over --epochs epochs, Lightning loop included),
one full-ranking evaluation of all test users (median of --eval-runs passes through ``trainer.test``),
and the peak RSS of the process. With --peer it then runs RecBole 1.2.1 BPR on the same data and
split (../shared/tools/peer-recbole) one after the other on the same machine and prints the ratios.

    .venv/bin/python experiments/bench/bench_mf.py [--peer] [--epochs 10] [--eval-runs 3]
Prints one JSON line per system.
"""

from __future__ import annotations

import argparse
import json

import torch
from common import bench_peer, bench_translearn, ratios

OVERRIDES = ["data=arts_office", "strategy=target_only", "model.embedding_dim=64", "data.batch_size=2048",
             "optimizer.lr=0.001", "logger=none", "callbacks=none",
             "evaluation.metrics=[recall,ndcg,mrr,hr]"]  # RecBole's metric set, at 10 and 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--peer", action="store_true", help="also run RecBole BPR (about a minute)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed (autocast)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. data=synthetic")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ours = bench_translearn([*OVERRIDES, *args.overrides], args.epochs, args.eval_runs, args.device, args.precision)
    print(json.dumps(ours))
    if args.peer and (peer := bench_peer("BPR", 30)):
        print(json.dumps(peer))
        print(json.dumps(ratios(ours, peer)))


if __name__ == "__main__":
    main()
