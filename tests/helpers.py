"""Assertions and small data builders shared by several test modules (plain functions; fixtures live in
conftest.py). Test modules import them as ``from helpers import ...``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def one_line_error(done: Any, prog: str, *needles: str, own_lines_only: bool = False) -> str:
    """The single stderr line of a failed console-script run (a ``CliResult``): asserts exit status 2, no
    traceback, one line ``<prog>: error: ...`` that names every one of ``needles``; returns it. With
    ``own_lines_only`` other tools' lines on stderr (a warning of a library) are let through, and only the lines
    that start with ``<prog>: `` are counted."""
    output = f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 2, output
    assert "Traceback" not in done.stdout + done.stderr, output
    lines = done.stderr.strip().splitlines()
    if own_lines_only:
        lines = [line for line in lines if line.startswith(f"{prog}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def refused(done: Any, *parts: str) -> str:
    """The one ``...: error: ...`` line of a run refused with exit status 2 (other stderr lines, such as log
    lines, may stand around it); asserts it names every one of ``parts`` and returns it."""
    assert done.returncode == 2, (done.stdout[-2000:], done.stderr[-3000:])
    lines = [line for line in done.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 1, done.stderr[-3000:]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


TABULAR_DOMAINS = ("data.source_domains=[books]", "data.target_domain=movies")  # extra for tabular_books_movies


def tabular_books_movies(tmp_path: Path, base: list[str], movies: str, *extra: str) -> list[str]:
    """Overrides for a ``data=tabular`` run: a tiny ``books.csv`` source (2 users x 3 items, written here) and the
    target file ``tmp_path / movies`` (the test writes it: the case under test), ``strategy=target_only``;
    ``base`` minus its first three overrides (the synthetic data's sizes), then ``extra``."""
    (tmp_path / "books.csv").write_text("uid,iid\n1,a\n1,b\n1,c\n2,a\n2,b\n2,c\n")
    return [*base[3:], "data=tabular", "data.dataset.user_column=uid", "data.dataset.item_column=iid",
            "strategy=target_only", *extra,
            f"+data.dataset.files={{books: {tmp_path / 'books.csv'}, movies: {tmp_path / movies}}}"]


def call_main(main: Callable[[list[str]], int], args: list[Any], capsys: Any) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a tool's ``main(argv)`` called in this process (arguments as strings)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def checkpoint_state(run: Path) -> dict[str, torch.Tensor]:
    """The Lightning ``state_dict`` of a run folder's best checkpoint (``metrics.json``'s ``best_checkpoint``)."""
    ckpt = json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    return torch.load(run / ckpt, map_location="cpu", weights_only=True)["state_dict"]
