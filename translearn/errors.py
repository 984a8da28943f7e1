"""Which exceptions are the user's to fix (bad data, config, files, checkpoints), in one place.

A user error is printed by the command-line tools as one line naming the file, line/column or config
key, and the tool exits with status 2; anything else is a bug and keeps its traceback. Set
``HYDRA_FULL_ERROR=1`` to get the traceback of a user error too.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any

USER_ERROR_EXIT = 2
# translearn-train sets HYDRA_FULL_ERROR itself (so Hydra lets errors through to it); this marks that.
FORCED_FULL_ERROR_ENV = "_TRANSLEARN_FORCED_FULL_ERROR"
INTERNAL_PREFIX = "internal error"  # how error.json's message of a bug (not a user error) starts
# An OS error with one of these codes is the machine's answer to the user's path, never a bug of translearn:
# permission denied, a read-only file system, a full disk or quota, an I/O error of the device.
USER_OS_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO})


class UserError(Exception):
    """Base of translearn's own user errors. ``config_key`` / ``file`` name where the problem is, if known."""

    def __init__(self, message: str = "", *, config_key: str | None = None, file: str | Path | None = None) -> None:
        super().__init__(message)
        self.config_key = config_key
        self.file = None if file is None else str(file)


class ConfigError(UserError, ValueError):
    """A config value that cannot be used; the message starts with its key."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is not readable or was made for another data set or model."""


class RankFailedError(UserError):
    """Another rank of a multi-process job failed before training (``translearn.distributed.agree_before_training``);
    the message names the rank and its error."""


class DivergedError(UserError, ValueError):
    """Training produced a non-finite loss (the learning rate or a loss weight is too large, or NaN); the
    message names the epoch and the loss term(s)."""


def check_finite(**knobs: float) -> None:
    """Raise ``ConfigError`` naming ``strategy.<name>`` for every knob that is NaN or infinite.

    Range checks such as ``lam < 0`` are False for NaN, so a NaN knob would pass them silently.
    """
    bad = {name: value for name, value in knobs.items() if not math.isfinite(float(value))}
    if bad:
        listed = ", ".join(f"strategy.{name}={value}" for name, value in bad.items())
        raise ConfigError(f"{listed}: expected a finite number", config_key=f"strategy.{next(iter(bad))}")


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes reported as one line: ours, missing files, and config errors of OmegaConf and Hydra."""
    from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        InterpolationResolutionError,
        MissingMandatoryValue,
        ValidationError,
    )

    return (UserError, FileNotFoundError, MissingMandatoryValue, ValidationError, ConfigKeyError,
            ConfigAttributeError, InterpolationResolutionError, ConfigCompositionException, OverrideParseException,
            SearchPathException)


def is_user_error(err: BaseException) -> bool:
    """Ours and the ``user_error_types()``, and an OS error about a path the user gave (``USER_OS_ERRORS``)."""
    return isinstance(err, user_error_types()) or (isinstance(err, OSError) and err.errno in USER_OS_ERRORS)


def debug_requested() -> bool:
    """Whether the user asked for full tracebacks (``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(FORCED_FULL_ERROR_ENV) != "1"


def one_line(err: BaseException) -> str:
    """The error's message on one line (Hydra's option lists and OmegaConf's key/type details folded in)."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    text = str(err)
    if isinstance(err, MissingConfigException):  # "Could not find ...", "Available options in 'g':", one per line
        lines = [line.strip() for line in text.split("Config search path:")[0].splitlines() if line.strip()]
        text = "; ".join(lines[:2]) + (" " + ", ".join(lines[2:]) if len(lines) > 2 else "")
    elif isinstance(err, OverrideParseException) and err.override not in text:
        text = f"override {err.override!r}: {text}"
    elif isinstance(err, OmegaConfBaseException):
        text = text.split("\n")[0]  # OmegaConf appends "full_key: ... object_type=..." lines
        key = getattr(err, "full_key", None)
        if key and key not in text:
            text = f"config key {key!r}: {text}"
    elif isinstance(err, OSError) and err.strerror and err.filename:
        text = f"{err.filename}: {err.strerror}"
    lines = [line.strip() for line in text.replace("\t", " ").splitlines() if line.strip()]
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).split("\n")[0] not in text:
        lines.append(str(cause).split("\n")[0])
    return "; ".join(lines) or type(err).__name__


def error_record(err: BaseException) -> dict[str, Any]:
    """What ``error.json`` holds: the error's class, its one-line message and, if known, the key or file. The
    message of an internal error (a bug, not a user error) starts with ``internal error``."""
    message = one_line(err) if is_user_error(err) else f"{INTERNAL_PREFIX} ({type(err).__name__}): {one_line(err)}"
    record: dict[str, Any] = {"error": type(err).__name__, "message": message}
    key = getattr(err, "config_key", None) or getattr(err, "full_key", None)
    file = getattr(err, "file", None) or getattr(err, "path", None) or getattr(err, "filename", None)
    if key:
        record["config_key"] = str(key)
    if file:
        record["file"] = str(file)
    return record
