"""Errors for results that must not be reported, and checks of numeric config knobs."""

from __future__ import annotations

import math


class DivergedError(ValueError):
    """Training produced a non-finite loss; the message names the epoch and the loss term(s)."""


def check_finite(**knobs: float) -> None:
    """Raise ``ValueError`` naming ``strategy.<name>`` for every knob that is NaN or infinite.

    Range checks such as ``lam < 0`` are False for NaN, so a NaN knob would pass them silently.
    """
    bad = {name: value for name, value in knobs.items() if not math.isfinite(float(value))}
    if bad:
        listed = ", ".join(f"strategy.{name}={value}" for name, value in bad.items())
        raise ValueError(f"{listed}: expected a finite number")
