"""Errors raised for bad input data, each naming where the problem is."""

from __future__ import annotations

from pathlib import Path

from translearn.errors import UserError


class DataError(UserError, ValueError):
    """Bad input data. The message names the file (and line or column when known) and what was expected."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f", line {line}"
            if column is not None:
                where += f", column {column!r}"
            where += ": "
        super().__init__(where + message, file=path)
        self.path, self.line, self.column = path, line, column
