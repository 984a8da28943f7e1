"""How cost grows with the data: synthetic data at 10k, 100k and 1M users, items fixed; or, with
``--item-sizes``, users fixed and 50k, 200k and 1M items per domain.

For each size, in its own process (so that peak memory is that size's own): generate and prepare the
data (generation, preprocessing, split, no cache), train target-only MF for --epochs epochs (median
epoch time; ``optimizer=lazy_adam`` by default, see translearn/optim.py), run one full-ranking test
pass over every test user, and read the process's peak RSS.
Items stay fixed (--items per domain); interactions grow with users (the synthetic defaults: about 25
per user in the source and 6 in the target). Each user chooses among --candidates items drawn for
them (``data.dataset.candidates``), which keeps generation at O(users x candidates).

    .venv/bin/python experiments/bench/bench_scaling.py [--users 10000 100000 1000000] [--out DIR]
    .venv/bin/python experiments/bench/bench_scaling.py --users 100000 --item-sizes 50000 200000 1000000

Large catalogues: the full-ranking score matrix is eval rows x items floats, so ``--eval-elems`` bounds
it (test users per batch = eval-elems / items, at least 1) and ``--eval-pairs`` measures the test pass on
about that many (user, item) pairs (``limit_test_batches``; 0: every test user). Peak RSS then shows
whether evaluation stays bounded as the catalogue grows, and ns per pair whether its cost per pair does.
``--max-scores N`` instead keeps --eval-batch users per batch and bounds the scores through the evaluator
(``evaluation.max_scores=N``: items in chunks of N / users, exact ranks); ``--max-scores null``: no bound.

    .venv/bin/python experiments/bench/bench_scaling.py --users 20000 --item-sizes 1000000 --eval-batch 256 \
        --max-scores 16777216 --threads 1 --epochs 1 --eval-pairs 500000000
Prints one JSON line per size, then a Markdown table; writes scaling.json, scaling.md and scaling.png
into --out (default outputs/bench).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def overrides(users: int, items: int, candidates: int, batch: int, eval_batch: int, optimizer: str,
              max_scores: str | None = None) -> list[str]:
    bound = [] if max_scores is None else [f"evaluation.max_scores={max_scores}"]
    return [*bound, "data=synthetic", f"optimizer={optimizer}", f"data.dataset.num_users={users}",
            f"data.dataset.num_items=[{items},{items}]",
            f"data.dataset.candidates={candidates}", "strategy=target_only", "model=mf", f"data.batch_size={batch}",
            f"data.eval_batch_size={eval_batch}", "logger=none", "callbacks=none",
            "evaluation.metrics=[hr,ndcg,mrr]", "evaluation.ks=[10]"]


def status_mib(field: str) -> float:
    """A field of /proc/self/status in MiB (``VmRSS``: resident now; ``VmHWM``: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux: ``5`` into /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(args: argparse.Namespace) -> dict:
    """One size, in this process."""
    import pytorch_lightning as pl
    import torch
    from common import EpochTimer

    from translearn.build import build_data, build_datamodule, build_model, build_strategy
    from translearn.cli.config import compose

    torch.set_num_threads(args.threads)
    cfg = compose(overrides(args.one, args.items, args.candidates, args.batch, args.eval_batch, args.optimizer,
                            args.max_scores),
                  output_dir=tempfile.mkdtemp(prefix="bench-scaling-"))
    start = time.perf_counter()
    prepared = build_data(cfg.data, tempfile.mkdtemp(prefix="bench-scaling-cache-"))
    data_s = time.perf_counter() - start
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pl.seed_everything(0, verbose=False)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    datamodule = build_datamodule(cfg, prepared, strategy)
    # the target's catalogue as ranked: items without interactions are dropped (compact), so with few users it
    # is smaller than --items
    n_items = strategy.model.item_encoder(prepared.target).num
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=args.epochs,
                         limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])
    trainer.fit(strategy, datamodule=datamodule)
    rss_train = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    test_users = int(len(set(prepared.held_out("test").users.tolist())))
    eval_batch = args.eval_batch
    if args.item_sizes:  # a bounded score matrix, and a bounded number of pairs measured
        if args.max_scores is None:  # bounded here by fewer users per batch; else by the evaluator's item chunks
            eval_batch = max(1, min(args.eval_batch, args.eval_elems // n_items))
        datamodule.eval_batch_size = eval_batch
        if args.eval_pairs:
            batches = max(1, -(-args.eval_pairs // (eval_batch * n_items)))
            trainer.limit_test_batches = batches
            test_users = min(test_users, batches * eval_batch)
    rss_before_eval = status_mib("VmRSS")
    reset = reset_peak_rss()  # the test pass's own peak, not data generation's (freed pages are reused)
    start = time.perf_counter()
    metrics = trainer.test(strategy, datamodule=datamodule, verbose=False)[0]
    eval_s = time.perf_counter() - start
    eval_peak = status_mib("VmHWM") if reset else None
    target = prepared.target
    interactions = sum(len(prepared.train(d)) for d in prepared.domains)
    return {
        "users": args.one, "items_per_domain": args.items, "interactions": interactions,
        "target_train_rows": len(prepared.train(target)), "test_users": test_users,
        "data_s": round(data_s, 2), "epoch_s": round(statistics.median(timer.times), 2),
        "eval_s": round(eval_s, 2), "target_items": n_items,
        "eval_us_per_user_item": round(eval_s / (test_users * n_items) * 1e6, 5),
        "epoch_us_per_row": round(statistics.median(timer.times) / len(prepared.train(target)) * 1e6, 3),
        "eval_batch_users": eval_batch, "max_scores": strategy.evaluator.max_scores,
        "item_chunk": (max(1, strategy.evaluator.max_scores // eval_batch) if strategy.evaluator.max_scores
                       and eval_batch * n_items > strategy.evaluator.max_scores else None),
        "peak_rss_after_data_mib": round(rss_data), "peak_rss_after_training_mib": round(rss_train),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_test_mib": round(rss_before_eval),
        "peak_rss_in_test_mib": None if eval_peak is None else round(eval_peak),
        "optimizer": args.optimizer, "torch_threads": args.threads, "device": args.device,
        **({"peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20)} if args.device == "cuda" else {}),
        "test_ndcg@10": round(metrics["test/target/ndcg@10"], 4),
    }


def table(rows: list[dict], by_items: bool = False) -> str:
    cols = ["users", "interactions", "test_users", "data_s", "epoch_s", "epoch_us_per_row", "eval_s",
            "eval_us_per_user_item", "peak_rss_after_data_mib", "peak_rss_mib"]
    if by_items:
        cols = ["items_per_domain", "target_items", "interactions", "data_s", "epoch_s", "epoch_us_per_row",
                "test_users",
                "eval_batch_users", "item_chunk", "eval_s", "eval_us_per_user_item", "peak_rss_after_data_mib",
                "peak_rss_after_training_mib", "peak_rss_mib", "rss_before_test_mib", "peak_rss_in_test_mib"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |"
              for r in rows]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [r["users"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("data_s", "data preparation"), ("epoch_s", "training epoch"), ("eval_s", "full-ranking test")):
        left.loglog(users, [r[key] for r in rows], marker="o", label=label)
    left.loglog(users, [rows[0]["epoch_s"] * u / users[0] for u in users], ls=":", c="grey", label="linear")
    left.set_xlabel("users")
    left.set_ylabel("seconds")
    left.legend()
    right.semilogx(users, [r["peak_rss_mib"] for r in rows], marker="o", label="peak RSS")
    right.semilogx(users, [r["peak_rss_after_data_mib"] for r in rows], marker="o", label="after data")
    right.set_xlabel("users")
    right.set_ylabel("MiB")
    right.legend()
    fig.suptitle(f"translearn scaling, {rows[0]['items_per_domain']:,} items per domain")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--items", type=int, default=50_000, help="items per domain (fixed)")
    parser.add_argument("--candidates", type=int, default=500, help="items each synthetic user chooses among")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4096, help="training rows per step")
    parser.add_argument("--eval-batch", type=int, default=1024, help="test users per full-ranking step")
    parser.add_argument("--optimizer", default="lazy_adam",
                        help="lazy_adam (touched rows only) or adam (every row, every step: quadratic in users)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench")
    parser.add_argument("--item-sizes", type=int, nargs="+", default=None,
                        help="vary items per domain instead (users fixed at the first --users)")
    parser.add_argument("--eval-elems", type=int, default=1 << 26,
                        help="with --item-sizes: bound on the full-ranking score matrix (rows x items)")
    parser.add_argument("--eval-pairs", type=int, default=4_000_000_000,
                        help="with --item-sizes: (user, item) pairs in the measured test pass (0: all)")
    parser.add_argument("--max-scores", default=None,
                        help="with --item-sizes: evaluation.max_scores (item chunks; 'null': no bound); keeps "
                             "--eval-batch users per batch instead of bounding by --eval-elems")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args)), flush=True)
        return
    rows = []
    sizes = [(args.users[0], n) for n in args.item_sizes] if args.item_sizes else [(u, args.items) for u in args.users]
    for users, items in sizes:
        child = [sys.executable, __file__, *sys.argv[1:], "--one", str(users), "--items", str(items)]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{users:,} users x {items:,} items failed (exit {done.returncode}):\n{done.stderr[-3000:]}",
                  file=sys.stderr)
            break
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if not rows:
        sys.exit(1)
    args.out.mkdir(parents=True, exist_ok=True)
    md = table(rows, by_items=bool(args.item_sizes))
    print("\n" + md)
    name = "scaling_items" if args.item_sizes else "scaling"
    (args.out / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(md + "\n")
    if not args.item_sizes:
        plot(rows, args.out / "scaling.png")
    print(f"\nwritten: {args.out / (name + '.md')}")


if __name__ == "__main__":
    main()
