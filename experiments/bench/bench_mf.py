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
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import pytorch_lightning as pl
import torch

from translearn.build import build_data, build_datamodule, build_model, build_strategy
from translearn.cli.config import compose, project_root


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.times.append(time.perf_counter() - self.start)


def bench_translearn(epochs: int, eval_runs: int) -> dict:
    overrides = ["data=arts_office", "strategy=target_only", "model.embedding_dim=64", "data.batch_size=2048",
                 "optimizer.lr=0.001", "logger=none", "callbacks=none",
                 "evaluation.metrics=[recall,ndcg,mrr,hr]"]  # RecBole's metric set, at 10 and 20
    cfg = compose(overrides, output_dir=tempfile.mkdtemp(prefix="bench-"))
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    pl.seed_everything(2022, verbose=False)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    datamodule = build_datamodule(cfg, prepared, strategy)
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer])
    trainer.fit(strategy, datamodule=datamodule)
    eval_times = []
    for _ in range(eval_runs):
        start = time.perf_counter()
        metrics = trainer.test(strategy, datamodule=datamodule, verbose=False)[0]
        eval_times.append(time.perf_counter() - start)
    train_rows = len(prepared.train(prepared.target))
    epoch_s = statistics.median(timer.times[1:] or timer.times)  # the first epoch warms up allocators
    return {
        "system": "translearn", "torch_threads": torch.get_num_threads(), "train_rows": train_rows,
        "s_per_epoch_median": round(epoch_s, 3), "train_rows_per_s": round(train_rows / epoch_s),
        "test_eval_s_median": round(statistics.median(eval_times), 3),
        "eval_users": int(len(set(prepared.held_out("test").users.tolist()))),
        "items": prepared.num_items(prepared.target),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        f"test_ndcg@10_after_{epochs}_epochs": round(metrics["test/target/ndcg@10"], 4),
    }


def bench_peer() -> dict | None:
    tool = project_root().parent / "shared" / "tools" / "peer-recbole"
    if not tool.is_dir():
        print(f"peer tool not found at {tool}; skipping the RecBole comparison", file=sys.stderr)
        return None
    subprocess.run([str(tool / "setup.sh")], check=True, capture_output=True)
    subprocess.run([sys.executable, str(tool / "prepare.py")], check=True, capture_output=True)
    out = subprocess.run([str(tool / "run.sh"), "BPR", "ao-office", "30"], check=True, capture_output=True, text=True)
    return {"system": "recbole-1.2.1", **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--eval-runs", type=int, default=3)
    parser.add_argument("--peer", action="store_true", help="also run RecBole BPR (about a minute)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    ours = bench_translearn(args.epochs, args.eval_runs)
    print(json.dumps(ours))
    if args.peer and (peer := bench_peer()):
        print(json.dumps(peer))
        print(json.dumps({
            "epoch_speedup_vs_recbole": round(peer["s_per_epoch_median"] / ours["s_per_epoch_median"], 2),
            "eval_speedup_vs_recbole": round(peer["test_eval_s"] / ours["test_eval_s_median"], 2),
            "peak_rss_ratio_vs_recbole": round(ours["peak_rss_mib"] / peer["peak_rss_mib"], 2),
        }))


if __name__ == "__main__":
    main()
