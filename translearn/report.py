"""Plain-text tables of run metrics."""

from __future__ import annotations

from collections.abc import Mapping


def format_metrics(metrics: Mapping[str, object], title: str = "") -> str:
    """A table with one row per target metric and one column per split (val, test); the second protocol's
    metrics (``val/target/sampled/ndcg@10``) follow as rows named ``sampled/ndcg@10``."""
    names: list[str] = []
    for key in metrics:
        parts = key.split("/")
        name = "/".join(parts[2:])
        plain = len(parts) == 3 or (len(parts) == 4 and parts[2] == "sampled")
        if plain and parts[0] in ("val", "test") and parts[1] == "target" and name not in names:
            names.append(name)
    width = max([len(n) for n in names] + [6])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  {'val':>8}  {'test':>8}")
    lines.append("-" * (width + 20))
    for name in names:
        cells = []
        for split in ("val", "test"):
            value = metrics.get(f"{split}/target/{name}")
            cells.append(f"{value:8.4f}" if isinstance(value, float | int) else f"{'-':>8}")
        lines.append(f"{name:<{width}}  {cells[0]}  {cells[1]}")
    return "\n".join(lines)
