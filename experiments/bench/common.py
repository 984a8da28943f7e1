"""Shared pieces of the speed benchmarks: time a translearn run's epochs and test passes, run the peer.

``bench_translearn(overrides, ...)`` trains one target-only run of the composed config without
validation, times each epoch (Lightning loop included) and ``--eval-runs`` full-ranking test passes, and
reads the peak RSS of this process. ``bench_peer(model, epochs)`` runs RecBole 1.2.1 through
../shared/tools/peer-recbole on the same data and split, after ours, on the same machine.
"""

from __future__ import annotations

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


def bench_translearn(overrides: list[str], epochs: int, eval_runs: int, device: str = "cpu",
                     precision: str = "32-true") -> dict:
    """``device``: cpu or cuda; ``precision``: Lightning's (``32-true``, ``bf16-mixed``: autocast)."""
    cfg = compose(overrides, output_dir=tempfile.mkdtemp(prefix="bench-"))
    prepared = build_data(cfg.data, cfg.paths.cache_dir)
    pl.seed_everything(2022, verbose=False)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    datamodule = build_datamodule(cfg, prepared, strategy)
    timer = EpochTimer()
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
                         max_epochs=epochs, limit_val_batches=0, logger=False,
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
        "system": "translearn", "device": device, "precision": precision,
        "torch_threads": torch.get_num_threads(), "train_rows": train_rows,
        "steps_per_epoch": trainer.num_training_batches,
        "s_per_epoch_median": round(epoch_s, 3), "train_rows_per_s": round(train_rows / epoch_s),
        "test_eval_s_median": round(statistics.median(eval_times), 3),
        "eval_users": int(len(set(prepared.held_out("test").users.tolist()))),
        "items": prepared.num_items(prepared.target),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **({"peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20)} if device == "cuda" else {}),
        f"test_ndcg@10_after_{epochs}_epochs": round(metrics["test/target/ndcg@10"], 4),
    }


def bench_peer(model: str, epochs: int) -> dict | None:
    """RecBole's JSON line for ``run.sh MODEL ao-office EPOCHS``, or None without the peer tool."""
    tool = project_root().parent / "shared" / "tools" / "peer-recbole"
    if not tool.is_dir():
        print(f"peer tool not found at {tool}; skipping the RecBole comparison", file=sys.stderr)
        return None
    subprocess.run([str(tool / "setup.sh")], check=True, capture_output=True)
    subprocess.run([sys.executable, str(tool / "prepare.py")], check=True, capture_output=True)
    out = subprocess.run([str(tool / "run.sh"), model, "ao-office", str(epochs)], check=True, capture_output=True,
                         text=True)
    return {"system": "recbole-1.2.1", **json.loads(out.stdout.strip().splitlines()[-1])}


def ratios(ours: dict, peer: dict) -> dict:
    """Peer time / our time (above 1: we are faster) and our peak memory / the peer's."""
    return {
        "epoch_speedup_vs_recbole": round(peer["s_per_epoch_median"] / ours["s_per_epoch_median"], 2),
        "eval_speedup_vs_recbole": round(peer["test_eval_s"] / ours["test_eval_s_median"], 2),
        "peak_rss_ratio_vs_recbole": round(ours["peak_rss_mib"] / peer["peak_rss_mib"], 2),
    }
