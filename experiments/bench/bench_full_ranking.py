"""Full ranking of one catalogue of a given size, alone: the evaluator's memory and time with and without a bound.

Data preparation drops items without interactions, so a synthetic data set of few users never ranks a real
1M-item catalogue (``bench_scaling.py --item-sizes`` reports the catalogue it got as ``target_items``). This
script builds target-only MF over --items items directly (random 64-d vectors; several items share a vector,
so there are ties), and ranks --batches evaluation batches of --users users (one held-out item each, --known
known items each, some held-out items among them) through ``Evaluator.update`` with
``evaluation.max_scores`` = each --max-scores value ("null": the whole [users, items] matrix at once), each
in a fresh process. Reports the process's RSS before the pass and its peak during it (``VmHWM`` reset
first), ns per (user, item) pair, and the metrics, which must be equal across bounds.

    .venv/bin/python experiments/bench/bench_full_ranking.py --items 1000000 --users 256 \\
        --max-scores null 16777216 1048576 --threads 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(args: argparse.Namespace, bound: int | None) -> dict:
    import torch

    from translearn.models import matrix_factorization
    from translearn.strategies import TargetOnly

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    model = matrix_factorization(args.users * args.batches, {"t": args.items}, embedding_dim=64)
    with torch.no_grad():
        model.user_encoder.weight.copy_(torch.randn(model.user_encoder.weight.shape, generator=g))
        shared = torch.randn(args.items // 4, 64, generator=g)  # 4 items per vector: tied scores
        model.item_encoders["t"].weight.copy_(shared[torch.arange(args.items) % len(shared)])
    strategy = TargetOnly(model, "t", ks=(10, 20), metrics=("hr", "ndcg", "mrr", "recall", "auc"))
    strategy.evaluator.max_scores = bound
    batches = []
    for b in range(args.batches):
        users = torch.arange(b * args.users, (b + 1) * args.users)
        targets = torch.randint(0, args.items, (args.users, 1), generator=g)
        known = torch.randint(0, args.items, (args.users, args.known), generator=g)
        known[::7, 0] = targets[::7, 0]  # a held-out item that is also known (the repeats rule)
        rows = torch.arange(args.users).repeat_interleave(args.known)
        # candidates: the items minus the distinct known ones that are not the held-out item (as the data module)
        distinct = torch.tensor([len(set(k) - {t}) for k, t in zip(known.tolist(), targets[:, 0].tolist(),
                                                                    strict=True)])
        batches.append({"users": users, "targets": targets, "exclude_rows": rows, "exclude_cols": known.flatten(),
                        "n_candidates": args.items - distinct})
    rss_before = status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on
    start = time.perf_counter()
    for batch in batches:
        strategy.evaluate_batch(batch, "test")
    seconds = time.perf_counter() - start
    metrics = {k: round(float(m.compute()), 6) for k, m in strategy.evaluator.metrics("test").items()}
    return {"items": args.items, "users_per_batch": args.users, "batches": args.batches,
            "max_scores": bound, "item_chunk": (max(1, bound // args.users) if bound and
                                                args.users * args.items > bound else None),
            "seconds": round(seconds, 2), "ns_per_pair": round(seconds / (args.batches * args.users * args.items) * 1e9,
                                                              2),
            "rss_before_mib": round(rss_before), "peak_rss_in_pass_mib": round(status_mib("VmHWM")),
            "added_by_pass_mib": round(status_mib("VmHWM") - rss_before), "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=256, help="users per evaluation batch")
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--known", type=int, default=20, help="known (masked) items per user")
    parser.add_argument("--max-scores", nargs="+", default=["null", "16777216"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args, None if args.one == "null" else int(args.one))), flush=True)
        return
    rows = []
    for bound in args.max_scores:
        child = [sys.executable, __file__, *sys.argv[1:], "--one", bound]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"max_scores={bound} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    same = all(r["metrics"] == rows[0]["metrics"] for r in rows)
    print(f"metrics equal across bounds: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
