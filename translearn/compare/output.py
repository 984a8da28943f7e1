"""Writers of the comparison: terminal table, Markdown, CSV and the gain plot (PNG)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from translearn.compare.runs import FailedRun


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _interval(ci: list | None, fmt=_pct) -> str:
    return "-" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def cells(row: dict) -> list[str]:
    pop = row.get("vs_popularity") or {}
    return [row["row"], row["strategy"], str(row["n"]), ",".join(map(str, row["seeds"])),
            f"{_num(row['mean'])} {_interval(row['ci'], _num)}", _pct(row["gain"]), _interval(row["gain_ci"]),
            _interval(row["gain_ci_seeds"]), row["verdict"] or "-", row.get("basis_short") or "-",
            _pct(pop.get("gain")), _interval(pop.get("gain_ci")), pop.get("verdict") or "-"]


def header(metric: str) -> list[str]:
    return ["row", "strategy", "n", "seeds", f"{metric} mean [95% CI, seeds]", "gain vs target_only",
            "95% CI (basis)", "95% CI (seeds)", "verdict", "basis", "gain vs popularity", "95% CI", "verdict"]


def text_table(rows: list[dict], metric: str, failed: list[FailedRun]) -> str:
    head, body = header(metric), [cells(r) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head)] + [fmt.format(*b) for b in body]
    return "\n".join(lines + _failed_lines(failed))


def markdown(rows: list[dict], metric: str, failed: list[FailedRun]) -> str:
    head = header(metric)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(lines + _failed_lines(failed))


def _failed_lines(failed: list[FailedRun]) -> list[str]:
    if not failed:
        return []
    return ["", f"failed jobs ({len(failed)}):"] + [f"  {f.folder}: {f.message}" for f in failed]


def csv_text(rows: list[dict]) -> str:
    fields = ["row", "strategy", "n", "seeds", "metric", "mean", "ci_low", "ci_high", "gain", "gain_ci_low",
              "gain_ci_high", "gain_ci_seeds_low", "gain_ci_seeds_high", "verdict", "basis",
              "gain_vs_popularity", "verdict_vs_popularity"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        pop = r.get("vs_popularity") or {}
        ci, gci, sci = r["ci"] or [None, None], r["gain_ci"] or [None, None], r["gain_ci_seeds"] or [None, None]
        writer.writerow({"row": r["row"], "strategy": r["strategy"], "n": r["n"],
                         "seeds": " ".join(map(str, r["seeds"])), "metric": r["metric"], "mean": r["mean"],
                         "ci_low": ci[0], "ci_high": ci[1], "gain": r["gain"], "gain_ci_low": gci[0],
                         "gain_ci_high": gci[1], "gain_ci_seeds_low": sci[0], "gain_ci_seeds_high": sci[1],
                         "verdict": r["verdict"], "basis": r["basis"], "gain_vs_popularity": pop.get("gain"),
                         "verdict_vs_popularity": pop.get("verdict")})
    return out.getvalue()


COLOURS = {"gain": "tab:green", "no_evidence": "tab:grey", "negative_transfer": "tab:red"}


def plot(rows: list[dict], metric: str, path: Path) -> bool:
    """Gain over target_only per row with its 95% interval; False when no row has a gain."""
    shown = [r for r in rows if r["gain"] is not None]
    if not shown:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(shown) + 1.5))
    for y, r in enumerate(shown):
        low, high = r["gain_ci"] or [r["gain"], r["gain"]]
        ax.errorbar(100 * r["gain"], y, xerr=[[100 * (r["gain"] - low)], [100 * (high - r["gain"])]], fmt="o",
                    capsize=4, color=COLOURS.get(r["verdict"], "black"))
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(shown)), [r["row"] for r in shown])
    ax.set_xlabel(f"gain over target_only, % of {metric} (95% CI)")
    ax.set_title("transfer gain (green: gain, red: negative transfer, grey: no evidence)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
