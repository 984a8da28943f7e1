"""A progress bar over batches on stderr, shown only when stderr is a terminal (log files stay clean)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bar(items: Iterable[T], total: int, desc: str, show: bool | None = None) -> Iterator[T]:
    """``items`` wrapped in a tqdm bar of ``total`` steps; ``show=None`` shows it on a terminal only."""
    from tqdm.auto import tqdm

    if show is None:
        show = bool(getattr(sys.stderr, "isatty", lambda: False)())
    yield from tqdm(items, total=total, desc=desc, disable=not show, file=sys.stderr, leave=False)


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges covering 0..n in steps of ``size``."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]
