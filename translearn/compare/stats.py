"""The statistics behind a verdict: a t-interval over seeds, and a two-level bootstrap (seeds, then users within
a seed) of paired per-user values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 2000
LEVEL = 0.95


def t_interval(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): the 95% Student-t interval of the mean of ``values``; None with fewer than 2."""
    if len(values) < 2:
        return None
    a = np.asarray(values, dtype=np.float64)
    mean, sem = float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a)))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(a) - 1)) * sem
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class PairedGain:
    """The relative gain ``mean(a) / mean(b) - 1`` of paired per-user values, with bootstrap intervals."""

    gain: float
    gain_ci: tuple[float, float]  # percentile interval of the relative gain
    diff_ci: tuple[float, float]  # percentile interval of mean(a - b): the verdict's
    users: int


def _paired_gain(a: np.ndarray, b: np.ndarray, mean_a: np.ndarray, mean_b: np.ndarray, users: int) -> PairedGain:
    """The gain of the observed values ``a``, ``b`` (any equal shape) and its percentile intervals from the
    bootstrap means ``mean_a``, ``mean_b`` [R] (the relative gain's interval is NaN when a resample of ``b``
    has mean 0)."""
    tails = [50 * (1 - LEVEL), 100 - 50 * (1 - LEVEL)]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = mean_a / mean_b - 1.0
        gain = float(a.mean() / b.mean() - 1.0) if b.mean() > 0 else math.nan
    low, high = np.percentile(rel, tails) if np.isfinite(rel).all() else (math.nan, math.nan)
    d_low, d_high = np.percentile(mean_a - mean_b, tails)
    return PairedGain(gain, (float(low), float(high)), (float(d_low), float(d_high)), users)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
                     chunk: int = 200) -> PairedGain:
    """Resample users (rows of ``a`` [U] and ``b`` [U] together) with replacement ``resamples`` times."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired_bootstrap needs two equal non-empty 1-d arrays, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    n = len(a)
    mean_a, mean_b = np.empty(resamples), np.empty(resamples)
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))  # [R, U]
        mean_a[start : start + len(idx)] = a[idx].mean(1)
        mean_b[start : start + len(idx)] = b[idx].mean(1)
    return _paired_gain(a, b, mean_a, mean_b, n)


def two_level_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
                        cells: int = 4_000_000) -> PairedGain:
    """Paired per-user values of several seeds, ``a`` [S, U] and ``b`` [S, U] (row s: seed s of each side,
    the same users in every row). Each resample draws S seeds with replacement, then U users with replacement
    within each drawn seed (the pair of runs of a seed moves together), so that both the spread between seeds
    and the spread between users enter the interval. With one seed it is the paired bootstrap over users."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"two_level_bootstrap needs two equal non-empty [seeds, users] arrays, got {a.shape} and "
                         f"{b.shape}")
    rng = np.random.default_rng(seed)
    n_seeds, n_users = a.shape
    chunk = max(1, min(resamples, cells // (n_seeds * n_users)))
    mean_a, mean_b = np.empty(resamples), np.empty(resamples)
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        seeds = rng.integers(0, n_seeds, size=(r, n_seeds, 1))  # [R, S, 1]
        users = rng.integers(0, n_users, size=(r, n_seeds, n_users))  # [R, S, U]
        mean_a[start : start + r] = a[seeds, users].mean((1, 2))
        mean_b[start : start + r] = b[seeds, users].mean((1, 2))
    return _paired_gain(a, b, mean_a, mean_b, n_users)


def verdict(low: float, high: float) -> str:
    """``gain`` when the interval lies above zero, ``negative_transfer`` below it, else ``no_evidence``."""
    if low > 0:
        return "gain"
    if high < 0:
        return "negative_transfer"
    return "no_evidence"
