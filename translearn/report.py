"""Plain-text tables of run metrics."""

from __future__ import annotations

from collections.abc import Mapping


def format_metrics(metrics: Mapping[str, object], title: str = "") -> str:
    """A table with one row per target metric and one column per split (val, test); the second protocol's
    metrics (``val/target/sampled/ndcg@10``) follow as rows named ``sampled/ndcg@10``, and an evaluated
    source's (``test/arts/ndcg@10``, ``evaluation.domains``) as rows named ``arts/ndcg@10``."""
    names: list[str] = []
    sources = [str(s) for s in metrics.get("source_domains") or []]
    for key in metrics:
        parts = key.split("/")
        if parts[0] not in ("val", "test") or len(parts) < 3:
            continue
        if parts[1] == "target" and (len(parts) == 3 or (len(parts) == 4 and parts[2] == "sampled")):
            name = "/".join(parts[2:])
        elif parts[1] in sources and len(parts) == 3:
            name = "/".join(parts[1:])
        else:
            continue
        if name not in names:
            names.append(name)
    names.sort(key=lambda n: n.split("/")[0] in sources)  # the target's rows first (a stable sort)
    width = max([len(n) for n in names] + [6])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  {'val':>8}  {'test':>8}")
    lines.append("-" * (width + 20))
    for name in names:
        cells = []
        for split in ("val", "test"):
            value = metrics.get(f"{split}/{name}" if name.split("/")[0] in sources else f"{split}/target/{name}")
            cells.append(f"{value:8.4f}" if isinstance(value, float | int) else f"{'-':>8}")
        lines.append(f"{name:<{width}}  {cells[0]}  {cells[1]}")
    lines += notes(metrics)
    return "\n".join(lines)


def notes(metrics: Mapping[str, object]) -> list[str]:
    """Lines under the table for what the run recorded as not quite right (``metrics.json`` holds the same)."""
    out = []
    mismatch = metrics.get("selection_mismatch")
    if isinstance(mismatch, Mapping):
        out.append(f"WARNING model selection: the best checkpoint scored {mismatch['metric']} = "
                   f"{float(mismatch['when_selected']):.6f} when selected but {float(mismatch['validated_again']):.6f} "
                   "when validated again; the selected epoch may be wrong (metrics.json: selection_mismatch)")
    for note in metrics.get("evaluation_notes") or []:
        out.append(f"note: {note}")
    return out
