"""Plain-text tables of run metrics."""

from __future__ import annotations

from collections.abc import Mapping


def format_metrics(metrics: Mapping[str, object], title: str = "") -> str:
    """A table with one row per target metric and one column per split (val, test)."""
    names: list[str] = []
    for key in metrics:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] in ("val", "test") and parts[1] == "target" and parts[2] not in names:
            names.append(parts[2])
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
