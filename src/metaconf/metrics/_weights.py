"""Shared input handling: every metric takes optional bootstrap weights.

`weights` is None (each item counts once), a 1-D array (one weight per item) or a 2-D array (one row of weights per
bootstrap resample, e.g. multinomial counts). With 2-D weights a metric returns one value per row (NaN where the
metric is undefined for that row), which is what makes the bootstrap a few matrix products instead of a loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaconf.errors import DataError


def as_values(values: Any, name: str, *, unit: bool = False) -> np.ndarray:
    """A 1-D float array; `unit` checks every value lies in [0, 1]."""
    if np.ndim(values) > 1:
        raise DataError(f"{name}: expected a 1-D sequence, got shape {np.shape(values)}")
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected numbers, got a missing or non-numeric value") from None
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: contains a missing or non-finite value at index {int(np.argmin(np.isfinite(arr)))}")
    if unit and arr.size and (arr.min() < 0 or arr.max() > 1):
        bad = int(np.argmax((arr < 0) | (arr > 1)))
        raise DataError(f"{name}: value {float(arr[bad])!r} at index {bad} is outside [0, 1]")
    return arr


def as_binary(values: Any, name: str) -> np.ndarray:
    """A 1-D float array of 0 / 1 (booleans accepted)."""
    arr = as_values(values, name)
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = int(np.argmax((arr != 0) & (arr != 1)))
        raise DataError(f"{name}: value {float(arr[bad])!r} at index {bad} is not 0/1 (true/false)")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"inputs differ in length: {lengths}")
    return next(iter(lengths.values()))


def as_weights(weights: Any, n: int) -> tuple[np.ndarray, bool]:
    """Weights as a 2-D (rows, n) array, and whether the caller passed one row only (return a scalar)."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=float)
    single = w.ndim == 1
    w = w.reshape(1, -1) if single else w
    if w.ndim != 2 or w.shape[1] != n:
        raise DataError(f"weights: expected shape ({n},) or (rows, {n}), got {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0):
        raise DataError("weights: must be finite and non-negative")
    return w, single


def finish(values: np.ndarray, single: bool) -> Any:
    """One row -> float, or None when undefined; several rows -> the array (NaN where undefined)."""
    if not single:
        return values
    value = float(values[0])
    return None if np.isnan(value) else value


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (an undefined metric, never a made-up number)."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def group_sums(w: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per row of `w` (rows, n): the sum of weights in each group -> (rows, n_groups)."""
    rows = w.shape[0]
    offsets = (np.arange(rows)[:, None] * n_groups + groups[None, :]).reshape(-1)
    return np.bincount(offsets, weights=w.reshape(-1), minlength=rows * n_groups).reshape(rows, n_groups)
