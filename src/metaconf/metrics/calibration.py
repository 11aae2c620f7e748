"""Calibration of stated confidence: ECE (equal-width and equal-mass bins), smooth ECE, Brier, overconfidence.

Every function takes `confidence` (floats in [0, 1]) and `correct` (0/1 or booleans) of the items whose
confidence could be read, plus optional bootstrap `weights` (see `_weights.py`); empty input gives None.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from metaconf.metrics._weights import as_binary, as_values, as_weights, finish, group_sums, ratio, same_length


def _inputs(confidence: Any, correct: Any, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    c = as_values(confidence, "confidence", unit=True)
    y = as_binary(correct, "correct")
    n = same_length(confidence=c, correct=y)
    w, single = as_weights(weights, n)
    return c, y, w, single


def _binned_error(c: np.ndarray, y: np.ndarray, w: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """sum_b |sum_{i in b} w_i (y_i - c_i)| / sum_i w_i, per weight row."""
    gap = group_sums(w * (y - c)[None, :], bins, n_bins)
    return ratio(np.abs(gap).sum(axis=1), w.sum(axis=1))


def ece(confidence: Any, correct: Any, n_bins: int = 10, *, weights: Any = None) -> Any:
    """Expected calibration error over `n_bins` equal-width bins of [0, 1].

    ECE = sum_b (n_b / n) |acc_b - conf_b|. Bin b holds [b/B, (b+1)/B); confidence 1 falls in the last bin and
    0 in the first (no extra bins). Returns a float (None for empty input).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    c, y, w, single = _inputs(confidence, correct, weights)
    bins = np.minimum(np.floor(c * n_bins).astype(int), n_bins - 1)
    return finish(_binned_error(c, y, w, bins, n_bins), single)


def adaptive_ece(confidence: Any, correct: Any, n_bins: int = 10, *, weights: Any = None) -> Any:
    """ECE over `n_bins` equal-mass bins: items sorted by confidence, each bin holds ~n / n_bins of the weight.

    An item goes to the bin that contains the midpoint of its share of the cumulative weight, so an item's
    bootstrap copies stay together; ties in confidence keep input order (a stable sort).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    c, y, w, single = _inputs(confidence, correct, weights)
    order = np.argsort(c, kind="stable")
    c, y, w = c[order], y[order], w[:, order]
    total = w.sum(axis=1, keepdims=True)
    mid = np.cumsum(w, axis=1) - w / 2
    share = ratio(mid, np.broadcast_to(total, mid.shape))
    bins = np.minimum(np.floor(np.nan_to_num(share) * n_bins).astype(int), n_bins - 1)
    rows = w.shape[0]
    offsets = (np.arange(rows)[:, None] * n_bins + bins).reshape(-1)
    gap = np.bincount(offsets, weights=(w * (y - c)[None, :]).reshape(-1), minlength=rows * n_bins)
    return finish(ratio(np.abs(gap.reshape(rows, n_bins)).sum(axis=1), total[:, 0]), single)


def brier(confidence: Any, correct: Any, *, weights: Any = None) -> Any:
    """Mean squared difference between confidence and correctness (0 best, 1 worst)."""
    c, y, w, single = _inputs(confidence, correct, weights)
    return finish(ratio(w @ (c - y) ** 2, w.sum(axis=1)), single)


def overconfidence(confidence: Any, correct: Any, *, weights: Any = None) -> Any:
    """Mean confidence minus accuracy: positive = overconfident, negative = underconfident."""
    c, y, w, single = _inputs(confidence, correct, weights)
    return finish(ratio(w @ (c - y), w.sum(axis=1)), single)


# ---------------------------------------------------------------------------------------------------- smooth ECE
SMOOTH_ECE_GRID = 201  # integration points on [0, 1] (trapezoid rule; within 1e-4 of exact for sigma >= 0.02)


def reflected_gaussian_kernel(t: np.ndarray, f: np.ndarray, sigma: float) -> np.ndarray:
    """K(t_g, f_i) for grid t (G,) and points f (n,) -> (G, n): a Gaussian folded back into [0, 1].

    Reflecting at 0 and 1 puts images of f at 2k + f and 2k - f; each K(., f) integrates to 1 over [0, 1].
    """
    d = t[:, None] - f[None, :]
    s = t[:, None] + f[None, :]
    total = np.zeros_like(d)
    reach = int(math.ceil(4 * sigma + 1))
    for k in range(-reach, reach + 1):
        for x in (d - 2 * k, s - 2 * k):
            if np.min(np.abs(x)) < 9 * sigma:  # farther images add < 1e-17 of the kernel's mass
                total += np.exp(-0.5 * (x / sigma) ** 2)
    return total / (sigma * math.sqrt(2 * math.pi))


def _smooth_error(c: np.ndarray, y: np.ndarray, w: np.ndarray, sigma: float) -> np.ndarray:
    """smECE_sigma = int_0^1 |sum_i w_i K(t, c_i) (y_i - c_i)| / sum_i w_i dt, per weight row."""
    t = np.linspace(0.0, 1.0, SMOOTH_ECE_GRID)
    trapezoid = np.full(t.size, t[1] - t[0])
    trapezoid[[0, -1]] /= 2
    kr = reflected_gaussian_kernel(t, c, sigma) * (y - c)[None, :]  # (G, n)
    return ratio(np.abs(w @ kr.T) @ trapezoid, w.sum(axis=1))


def smooth_bandwidth(confidence: Any, correct: Any, *, tol: float = 1e-7) -> float | None:
    """Blasiok & Nakkiran's bandwidth rule: the sigma* with smECE_sigma* = sigma* (root finding).

    smECE_sigma falls as sigma grows while sigma rises, so the fixed point is unique; sigma* is also the value
    of smooth ECE. None for empty input.
    """
    c = as_values(confidence, "confidence", unit=True)
    y = as_binary(correct, "correct")
    same_length(confidence=c, correct=y)
    if not c.size:
        return None
    return _bandwidth(c.tobytes(), y.tobytes(), tol)


@functools.lru_cache(maxsize=256)  # the summary asks again for the same items (point estimate, then bootstrap)
def _bandwidth(c_bytes: bytes, y_bytes: bytes, tol: float) -> float:
    c, y = np.frombuffer(c_bytes), np.frombuffer(y_bytes)
    w = np.ones((1, c.size))

    def gap(sigma: float) -> float:
        return float(_smooth_error(c, y, w, sigma)[0]) - sigma

    # g(sigma) = smECE_sigma - sigma falls from >= 0 to g(1) <= 0 (smECE <= mean |y - c| <= 1): Illinois method
    lo, hi = 1e-4, 1.0
    g_lo, g_hi = gap(lo), gap(hi)
    if g_lo <= 0:
        return lo
    side = 0
    for _ in range(100):
        mid = (lo * g_hi - hi * g_lo) / (g_hi - g_lo)
        g_mid = gap(mid)
        if abs(g_mid) < tol or hi - lo < tol:
            return mid
        if g_mid > 0:
            lo, g_lo = mid, g_mid
            if side == 1:
                g_hi /= 2
            side = 1
        else:
            hi, g_hi = mid, g_mid
            if side == -1:
                g_lo /= 2
            side = -1
    return mid


def smooth_ece(confidence: Any, correct: Any, bandwidth: float | None = None, *, weights: Any = None) -> Any:
    """Smooth ECE (Blasiok & Nakkiran 2023): kernel-smoothed calibration error with a reflected Gaussian kernel.

    smECE_sigma = int_0^1 |(1/n) sum_i K_sigma(t, c_i) (y_i - c_i)| dt. With `bandwidth=None` sigma is the
    paper's fixed point (smECE_sigma = sigma, chosen on these items); pass a number to fix it (the bootstrap
    holds the full-sample sigma* fixed across resamples).
    """
    c, y, w, single = _inputs(confidence, correct, weights)
    if not c.size:
        return finish(np.full(w.shape[0], np.nan), single)
    if bandwidth is None:
        if not single:
            raise ValueError("smooth_ece: pass a fixed bandwidth with 2-D weights")
        keep = w[0] > 0
        bandwidth = smooth_bandwidth(c[keep], y[keep]) if keep.any() else None
        if bandwidth is None:
            return None
    if bandwidth <= 0:
        raise ValueError("bandwidth must be positive")
    return finish(_smooth_error(c, y, w, max(float(bandwidth), 1e-4)), single)
