"""Speed and memory of CMF (``experiment=cmf``) on one pair, beside RecBole-CDR's CMF on the same split.

Times, in this process (one torch thread): one training epoch (median over --epochs, the first excluded,
Lightning loop included, no validation), one full-ranking test pass (median of --eval-runs), and the peak RSS.
With --peer it then runs ``../shared/tools/peer-recbole-cdr/run.sh CMF PAIR 30`` (early stopping, its own timing).
Test NDCG@10 with early stopping comes from a full run: ``translearn-train experiment=cmf data=...``.

    .venv/bin/python experiments/bench/bench_cmf.py ao|cs [--peer] [--epochs 5] [--eval-runs 3]
Prints one JSON line per system.
"""

from __future__ import annotations

import argparse
import json
import subprocess

import torch
from common import bench_translearn

from translearn.cli.config import project_root

DATA = {"ao": "data=arts_office", "cs": "data=cloth_sport_peer"}  # the peer's split of each pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair", choices=sorted(DATA))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--peer", action="store_true", help="then run RecBole-CDR's CMF (minutes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = ["experiment=cmf", DATA[args.pair], "logger=none", "callbacks=none",
                 "evaluation.metrics=[recall,ndcg,mrr,hr]"]  # RecBole's metric set, at 10 and 20
    print(json.dumps({"pair": args.pair, **bench_translearn(overrides, args.epochs, args.eval_runs)}))
    if args.peer:
        tool = project_root().parent / "shared" / "tools" / "peer-recbole-cdr" / "run.sh"
        out = subprocess.run([str(tool), "CMF", args.pair, "30"], check=True, capture_output=True, text=True)
        print(json.dumps({"system": "recbole-cdr-0.1.0", **json.loads(out.stdout.strip().splitlines()[-1])}))


if __name__ == "__main__":
    main()
