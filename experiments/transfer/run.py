"""Every strategy on the real data sets, 3 seeds, one protocol; main knobs tuned on validation only.

For each row of a plan: run seed 0 over the row's knob grid, keep the value with the best
``val/target/ndcg@10``, run seeds 1 and 2 with it, and report mean ± sample std over the 3 seeds.
Runs land in ``--out`` (default outputs/experiments); the table is printed as Markdown and saved as
``<out>/<plan>.md`` and ``<out>/<plan>.json``. Runs already present are reused, so the script resumes.

    .venv/bin/python experiments/transfer/run.py arts_office cloth_sport_sparse ml100k_genres_sparse \
        arts_office_cold20 arts_office_cold50 arts_office_cold80
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from translearn.cache import entry_lock

ROOT = Path(__file__).resolve().parents[2]
TRAIN = str(Path(sys.executable).parent / "translearn-train")
METRICS = ["val/target/ndcg@10", "test/target/ndcg@10", "test/target/hr@10", "test/target/mrr@10"]
RATING_METRICS = ["val/target/rmse", "test/target/rmse", "test/target/mae", "test/target/ndcg@10"]
# Rating prediction on cold-start users (EMCDR protocol): biased MF on centred ratings, MSE loss,
# model selection and early stopping on validation RMSE (lower is better).
RATING = ["data=ml100k_genres", "data.split=cold_start", "model=mf", "model.bias=true", "loss=mse",
          "data.num_negatives=0", "+data.preprocess.center._target_=translearn.data.NormaliseRatings",
          "+data.preprocess.center.method=center", "monitor=val/target/rmse", "callbacks.model_checkpoint.mode=min",
          "callbacks.early_stopping.mode=min", "trainer.max_epochs=100", "callbacks.early_stopping.patience=10",
          "++strategy.stage.max_epochs=50"]
RATING_ROWS = ["target_only", "joint", "fine-tuning", "model fixing (frozen users)", "mapping (EMCDR)"]

# The bare training budget before section 10 of experiments/README.md (sections 5 and 8 were measured with it):
# 30 epochs, patience 10, no step floor; source stage 20 epochs, patience 5, no floor. ``--budget old`` adds it.
OLD_BUDGET = ["trainer.max_epochs=30", "callbacks.early_stopping.patience=10", "callbacks.early_stopping.min_steps=0",
              "strategy.stage.max_epochs=20", "strategy.stage.patience=5", "strategy.stage.min_steps=0"]
BUDGETS = {"default": [], "old": OLD_BUDGET}

SASREC_TEXT = ["model=sasrec", "model.content.item_tower=text"]
SASREC_ID_TEXT = ["model=sasrec", "model.content.item_tower=id_text"]
# row label -> (strategy, fixed overrides, {knob: values tuned on validation at seed 0})
ROWS = {
    "popularity": ("popularity", [], {}),
    "target_only": ("target_only", [], {}),
    "joint": ("joint", [], {"strategy.lam": ["0.0625", "0.25", "1", "4", "16", "64"]}),
    "joint (uncertainty weights)": ("joint", ["strategy.weighting=uncertainty"], {}),
    "fine-tuning": ("finetune", [], {"strategy.l2sp": ["0", "0.001"]}),
    "model fixing (frozen users)": ("finetune", ["strategy.freeze=[user_encoder]"], {}),
    "distillation": ("distill", [], {"strategy.alpha": ["0.5", "1", "2", "4"]}),
    "feature reuse": ("feature_reuse", [], {"strategy.combine": ["concat", "gate"]}),
    "fusion (w tuned on valid)": ("fusion", [], {}),
    "mapping (EMCDR)": ("mapping", [], {"strategy.mapper": ["linear", "mlp"]}),
    # the teacher / source scorer is the joint model at the lam joint chose on valid (1/16 on both plans)
    "distillation (teacher lam=1/16)": ("distill", ["strategy.stage.lam=0.0625"],
                                        {"strategy.alpha": ["0.5", "1", "2", "4"]}),
    "fusion (teacher lam=1/16)": ("fusion", ["strategy.stage.lam=0.0625"], {}),
    # sequence models (issue 8): each row is the default command a user types, no tuning
    "SASRec, Office history": ("target_only", ["model=sasrec"], {}),
    "GRU4Rec, Office history": ("target_only", ["model=gru4rec"], {}),
    "SASRec, interleaved Arts+Office history": ("target_only", ["model=sasrec", "model.history_scope=all"], {}),
    "SASRec joint": ("joint", ["model=sasrec"], {}),
    "SASRec joint, interleaved Arts+Office history": ("joint", ["model=sasrec", "model.history_scope=all"], {}),
    "SASRec fine-tuning": ("finetune", ["model=sasrec"], {}),
    "SASRec, Office history, batch 2048": ("target_only", ["model=sasrec", "data.sequence_batch_size=2048"], {}),
    # content transfer (issue 9): the pretrained text encoder's item vectors through a trained adaptor
    "SASRec text": ("target_only", [*SASREC_TEXT], {}),
    "SASRec text joint": ("joint", [*SASREC_TEXT], {}),
    "SASRec text fine-tuning": ("finetune", [*SASREC_TEXT], {}),
    "SASRec text zero-shot (pretrained on Arts)": ("finetune", [*SASREC_TEXT, "trainer.max_epochs=0"], {}),
    "SASRec text, fine-tune the adaptor only": ("finetune", [*SASREC_TEXT, "strategy.freeze=[user_encoder]"], {}),
    "SASRec id+text": ("target_only", [*SASREC_ID_TEXT], {}),
    "SASRec id+text joint": ("joint", [*SASREC_ID_TEXT], {}),
    "SASRec id+text fine-tuning": ("finetune", [*SASREC_ID_TEXT], {}),
    "MF": ("target_only", [], {}),
    "MF text": ("target_only", ["model.content.item_tower=text"], {}),
    "MF text fine-tuning, adaptor kept fixed": ("finetune", ["model.content.item_tower=text",
                                                             "strategy.freeze=[content_adaptor]"], {}),
    "MF text fine-tuning": ("finetune", ["model.content.item_tower=text"], {}),
    "MF id+text": ("target_only", ["model.content.item_tower=id_text"], {}),
    "MF id+text fine-tuning": ("finetune", ["model.content.item_tower=id_text"], {}),
}
SEQUENCE_ROWS = ["SASRec, Office history", "GRU4Rec, Office history", "SASRec, interleaved Arts+Office history",
                 "SASRec joint", "SASRec joint, interleaved Arts+Office history", "SASRec fine-tuning"]
TEXT_DISJOINT_ROWS = ["SASRec text", "SASRec text zero-shot (pretrained on Arts)",
                      "SASRec text, fine-tune the adaptor only", "SASRec text fine-tuning", "MF", "MF text",
                      "MF text fine-tuning, adaptor kept fixed", "MF text fine-tuning", "MF id+text",
                      "MF id+text fine-tuning", "SASRec id+text", "SASRec id+text fine-tuning"]
TEACHER_ROWS = ["distillation (teacher lam=1/16)", "fusion (teacher lam=1/16)"]
COLD_ROWS = ["popularity", "target_only", "joint", "fine-tuning", "model fixing (frozen users)", "mapping (EMCDR)"]
# plan -> (base overrides, rows, smaller knob grids for that plan)
PLANS = {
    "arts_office": (["experiment=arts_office"],
                    [r for r in ROWS if r not in ("mapping (EMCDR)", *TEACHER_ROWS, *SEQUENCE_ROWS)], {}),
    # the data preset alone (experiment=arts_office would set model=mf): trainer and stopping defaults
    "arts_office_sequences": (["data=arts_office"], [*SEQUENCE_ROWS, "SASRec, Office history, batch 2048"], {}),
    # no shared users (issue 9 section 4): half the users train on Arts, the other half on Office
    "arts_office_disjoint": (["data=arts_office", "data/split=disjoint_users"],
                             ["popularity", "SASRec, Office history", *TEXT_DISJOINT_ROWS], {}),
    # shared users: does the text bridge add to the id transfer of arts_office_sequences?
    "arts_office_text": (["data=arts_office"], ["SASRec text", "SASRec text joint", "SASRec text fine-tuning",
                                                "SASRec id+text", "SASRec id+text joint"], {}),
    "ml100k_genres_sparse": (["experiment=ml100k_genres_sparse"],
                             [r for r in ROWS if r not in ("mapping (EMCDR)", *SEQUENCE_ROWS)], {}),
    "cloth_sport_sparse": (["experiment=cloth_sport_sparse"],
                           [r for r in ROWS
                            if r not in ("mapping (EMCDR)", "joint (uncertainty weights)", *SEQUENCE_ROWS)], {}),
    **{f"arts_office_cold{int(f * 100)}": (["experiment=arts_office_cold", f"data.split.holdout_fraction={f}"],
                                           COLD_ROWS, {"joint": {"strategy.lam": ["1", "4"]}})
       for f in (0.2, 0.5, 0.8)},
    **{f"ml100k_genres_cold{int(f * 100)}_rating": ([*RATING, f"data.split.holdout_fraction={f}"], RATING_ROWS, {})
       for f in (0.2, 0.5, 0.8)},
}


def selection(plan: str) -> tuple[str, list[str], bool]:
    """(the validation key that picks a knob, the table's columns, whether lower is better) for a plan."""
    if plan.endswith("_rating"):
        return "val/target/rmse", RATING_METRICS, True
    return "val/target/ndcg@10", METRICS, False


def run(overrides: list[str], folder: Path) -> dict:
    """One training run (skipped when ``folder/metrics.json`` exists); returns its metrics. Locked per folder,
    so two drivers over the same plan (e.g. one with ``--reverse-seeds``) never run the same job twice."""
    done = folder / "metrics.json"
    with entry_lock(folder):
        if not done.is_file():
            cmd = [TRAIN, *overrides, f"hydra.run.dir={folder}"]
            print("$ translearn-train " + " ".join(overrides), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(done.read_text())


def _folder(knob: str, value: str) -> str:
    """A folder name without the characters Hydra's override grammar reserves (=, [, ], ...)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{knob.removeprefix('strategy.')}-{value}")


def run_row(plan: str, label: str, base: list[str], out: Path, n_seeds: int = 3, reverse: bool = False,
            budget: str = "default") -> dict:
    """One row: seed 0 over the knob grid, then the chosen value at every seed. ``budget='old'`` trains with
    ``OLD_BUDGET`` and keeps its runs in folders of their own (``<knob or default>-old-budget``)."""
    strategy, fixed, grid = ROWS[label]
    select, metrics, lower = selection(plan)
    grid = PLANS[plan][2].get(label, grid)
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    common = [*base, f"strategy={strategy}", *fixed, *BUDGETS[budget]]
    suffix = "" if budget == "default" else f"-{budget}-budget"
    choice: list[str] = []
    tuning = {}
    if grid:
        (knob, values), = grid.items()
        for value in values:
            seed0 = out / plan / slug / (_folder(knob, value) + suffix) / "seed0"
            result = run([*common, f"{knob}={value}", "seed=0"], seed0)
            tuning[value] = result[select]
        best = (min if lower else max)(values, key=lambda v: tuning[v])
        choice = [f"{knob}={best}"]
    folder = out / plan / slug / ((_folder(*choice[0].split("=", 1)) if choice else "default") + suffix)
    order = range(n_seeds)[::-1] if reverse else range(n_seeds)
    by_seed = {s: run([*common, *choice, f"seed={s}"], folder / f"seed{s}") for s in order}
    seeds = [by_seed[s] for s in range(n_seeds)]
    row = {"row": label, "seeds": n_seeds,
           "command": "translearn-train " + " ".join([*common, *choice, "seed=" + ",".join(map(str, range(n_seeds)))]),
           "tuned": {"knob": choice, f"{select}_seed0": tuning} if grid else None}
    for key in metrics:
        values = [s[key] for s in seeds]
        row[key] = [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else float("nan")]
    return row


def table(rows: list[dict], metrics: list[str]) -> str:
    head = "| strategy | " + " | ".join(metrics) + " | chosen on valid |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for r in rows:
        one = r.get("seeds", 3) == 1
        cells = [f"{r[k][0]:.4f} (seed 0)" if one else f"{r[k][0]:.4f} ± {r[k][1]:.4f}" for k in metrics]
        chosen = " ".join(r["tuned"]["knob"]) if r["tuned"] else "-"
        lines.append(f"| {r['row']} | " + " | ".join(cells) + f" | {chosen} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plans", nargs="+", choices=list(PLANS))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "experiments")
    parser.add_argument("--rows", nargs="+", help="only these row labels (to split a plan between processes)")
    parser.add_argument("--seeds", type=int, default=3, choices=(1, 2, 3),
                        help="seeds per row (1 or 2 for a first look when time is short; the tables use 3)")
    parser.add_argument("--reverse-seeds", action="store_true",
                        help="run each row's seeds last first (a second driver beside a first one)")
    parser.add_argument("--budget", choices=list(BUDGETS), default="default",
                        help="old: the bare budget before the defaults study (30 epochs, patience 10; stage 20, "
                             "patience 5), with which sections 5 and 8 were measured")
    args = parser.parse_args()
    for plan in args.plans:
        base, labels, _ = PLANS[plan]
        labels = [label for label in labels if not args.rows or label in args.rows]
        rows = [run_row(plan, label, base, args.out, args.seeds, args.reverse_seeds, args.budget) for label in labels]
        md = table(rows, selection(plan)[1])
        # a partial run (or another budget) does not overwrite the plan's table
        if not args.rows and args.seeds == 3 and args.budget == "default":
            (args.out / f"{plan}.md").write_text(md + "\n")
            (args.out / f"{plan}.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(f"\n## {plan}\n{md}\n", flush=True)


if __name__ == "__main__":
    main()
