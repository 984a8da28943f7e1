"""Memory of N data-parallel CPU processes on one machine: proportional set size (PSS) summed over the ranks.

PSS (``/proc/self/smaps_rollup``) counts a page shared by k processes as 1/k in each, so the sum over the
ranks is what the job really holds. The prepared data is built once into a cache first, in a process of its
own (not measured); then for each N a job of N ranks (``torchrun --standalone --nproc-per-node N``, gloo;
N=1: one plain process) reads it from the cache (mapped), builds the model, strategy and data module, and
trains a few steps of target-only MF under DDP (``--optimizer adam``, dense moments of every row, or
``lazy_adam``, sparse gradients reduced as sparse tensors). Each rank reads its PSS when training starts and
again after the steps, while all ranks are alive (a barrier on each side), and rank 0 prints the sums: of the
whole process, and of the prepared data's mappings alone (the cache entry's ``.npy`` files, from
``/proc/self/smaps``), so the data's share shows apart from the model, optimiser state and interpreter.

    .venv/bin/python experiments/bench/bench_memory.py [--users 1000000] [--procs 1 2 4] [--steps 20]
        [--optimizer adam|lazy_adam] [--cache DIR]   (a given --cache is prepared once, reused by later runs)
Prints one JSON line per N and a Markdown table (ratios against N=1 measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def overrides(args: argparse.Namespace) -> list[str]:
    return ["data=synthetic", f"optimizer={args.optimizer}", f"data.dataset.num_users={args.users}",
            f"data.dataset.num_items=[{args.items},{args.items}]", f"data.dataset.candidates={args.candidates}",
            "strategy=target_only", "model=mf", "data.batch_size=4096", "logger=none", "callbacks=none",
            f"paths.cache_dir={args.cache}"]


def pss_mib() -> float:
    """This process's proportional set size in MiB (shared pages divided among the processes mapping them)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Pss line in /proc/self/smaps_rollup")


def data_pss_mib(cache: Path) -> float:
    """PSS in MiB of this process's mappings of the prepared arrays: ``.npy`` files under ``cache``."""
    root, total, counting = str(cache.resolve()), 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's header: address range ... path
            path = head[5] if len(head) == 6 else ""
            counting = path.startswith(root) and path.endswith(".npy")
        elif counting and line.startswith("Pss:"):
            total += int(line.split()[1])
    return total / 1024


def prepare_once(args: argparse.Namespace) -> dict:
    from translearn.build import build_data
    from translearn.cli.config import compose

    cfg = compose(overrides(args), output_dir=tempfile.mkdtemp(prefix="bench-memory-"))
    start = time.perf_counter()
    prepared = build_data(cfg.data, args.cache)
    rows = sum(len(prepared.data.domain(d).interactions) for d in prepared.domains)
    return {"users": args.users, "interactions": rows, "prepare_s": round(time.perf_counter() - start, 1)}


def worker(args: argparse.Namespace) -> None:
    """One rank of the measured job (under torchrun when --procs > 1)."""
    import pytorch_lightning as pl
    import torch
    import torch.distributed as dist

    from translearn.build import build_data, build_datamodule, build_model, build_strategy
    from translearn.cli.config import compose

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = compose(overrides(args), output_dir=tempfile.mkdtemp(prefix="bench-memory-"))
    prepared = build_data(cfg.data, args.cache)  # read from the cache: mapped
    pl.seed_everything(0, verbose=False)
    strategy = build_strategy(cfg, prepared, build_model(cfg, prepared))
    datamodule = build_datamodule(cfg, prepared, strategy)
    found: dict[str, float] = {}

    class Measure(pl.Callback):
        def _read(self, trainer: pl.Trainer, when: str) -> None:
            trainer.strategy.barrier()
            value = torch.tensor([pss_mib(), data_pss_mib(args.cache)], dtype=torch.float64)
            if world > 1:
                dist.all_reduce(value)
            found[f"pss_sum_{when}_mib"], found[f"data_pss_sum_{when}_mib"] = float(value[0]), float(value[1])
            trainer.strategy.barrier()

        def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._read(trainer, "at_start")  # data, model, optimiser state, loaders

        def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            self._read(trainer, "after_steps")

    trainer = pl.Trainer(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto", max_epochs=1,
                         limit_train_batches=args.steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False, callbacks=[Measure()])
    trainer.fit(strategy, datamodule=datamodule)
    if trainer.is_global_zero:
        print(json.dumps({"procs": world, "optimizer": args.optimizer, **{k: round(v) for k, v in found.items()}}),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=50_000, help="items per domain")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=20, help="training steps per rank before the second reading")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "lazy_adam"])
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: a temp folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cache is None:
        args.cache = Path(tempfile.mkdtemp(prefix="bench-memory-cache-"))
    if args.worker:
        worker(args)
        return
    if args.prepare:
        print(json.dumps(prepare_once(args)), flush=True)
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    me = [__file__, "--users", str(args.users), "--items", str(args.items), "--candidates", str(args.candidates),
          "--steps", str(args.steps), "--cache", str(args.cache), "--optimizer", args.optimizer]
    done = subprocess.run([sys.executable, *me, "--prepare"], capture_output=True, text=True, env=env)
    if done.returncode != 0:  # in a process of its own, so that its peak is gone before the measured jobs
        sys.exit(f"preparing the data failed:\n{done.stderr[-3000:]}")
    print(done.stdout.strip().splitlines()[-1], flush=True)
    rows = []
    for n in args.procs:
        me = [*me[:1], "--worker", *me[1:]] if "--worker" not in me else me
        if n == 1:
            cmd = [sys.executable, *me]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), *me]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{n} processes failed (exit {done.returncode}):\n{done.stderr[-3000:]}", file=sys.stderr)
            break
        rows.append(json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1]))
        rows[-1]["ratio_at_start"] = round(rows[-1]["pss_sum_at_start_mib"] / rows[0]["pss_sum_at_start_mib"], 2)
        rows[-1]["ratio_after_steps"] = round(rows[-1]["pss_sum_after_steps_mib"] / rows[0]["pss_sum_after_steps_mib"],
                                              2)
        rows[-1]["data_ratio_after_steps"] = round(rows[-1]["data_pss_sum_after_steps_mib"]
                                                   / max(rows[0]["data_pss_sum_after_steps_mib"], 1), 2)
        for when in ("at_start", "after_steps"):  # everything but the data: interpreter, model, optimiser, batches
            rows[-1][f"rest_{when}_mib"] = rows[-1][f"pss_sum_{when}_mib"] - rows[-1][f"data_pss_sum_{when}_mib"]
        print(json.dumps(rows[-1]), flush=True)
    cols = ["procs", "pss_sum_at_start_mib", "ratio_at_start", "pss_sum_after_steps_mib", "ratio_after_steps",
            "data_pss_sum_at_start_mib", "data_pss_sum_after_steps_mib", "data_ratio_after_steps",
            "rest_at_start_mib", "rest_after_steps_mib"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
