"""Percentile bootstrap intervals, one resample per row of a weight matrix (vectorised, seeded).

A resample draws n items with replacement; item i then counts `k_i` times. Every metric in metaconf.metrics
takes these counts as `weights` of shape (n_boot, n) and returns all n_boot values at once. A metric_fn without a
`weights` argument is called once per resample on the resampled arrays instead (same draws, slower).
Resamples where the metric is undefined (e.g. AUROC drew one class only) are dropped from the percentiles; with
none left the interval is None.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from metaconf.errors import DataError

Data = Sequence[Any] | Mapping[str, Any]


def _columns(data: Data) -> tuple[list[np.ndarray], list[str] | None]:
    names = list(data) if isinstance(data, Mapping) else None
    cols = [np.asarray(data[k]) for k in names] if names is not None else [np.asarray(c) for c in data]
    lengths = {len(c) for c in cols}
    if len(lengths) > 1:
        raise DataError(f"bootstrap data: columns differ in length: {sorted(lengths)}")
    return cols, names


def _accepts_weights(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "weights" or p.kind is p.VAR_KEYWORD for p in params)


def _call(fn: Callable[..., Any], cols: list[np.ndarray], names: list[str] | None, **extra: Any) -> Any:
    return fn(**dict(zip(names, cols)), **extra) if names is not None else fn(*cols, **extra)


def _item_columns(
    items: Mapping[Hashable, Sequence[Any]], ids: list[Hashable]
) -> tuple[list[np.ndarray], list[str] | None]:
    """The columns of `items` at `ids`, and their names when the items are named tuples."""
    chosen = [items[k] for k in ids]
    return [np.asarray(col) for col in zip(*chosen)], list(getattr(chosen[0], "_fields", ())) or None


@functools.lru_cache(maxsize=32)
def resample_indices(n: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_boot, n) item indices drawn with replacement and each item's count per resample (read-only, cached);
    the same seed gives the same draws."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    rows = np.repeat(np.arange(n_boot), n)
    counts = np.bincount(rows * n + idx.reshape(-1), minlength=n_boot * n).reshape(n_boot, n).astype(float)
    idx.flags.writeable = counts.flags.writeable = False
    return idx, counts


def _replicates(
    fn: Callable[..., Any], cols: list[np.ndarray], names: list[str] | None, draws: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """The metric on every resample -> (n_boot,) floats, NaN where undefined."""
    idx, counts = draws
    n_boot = idx.shape[0]
    if _accepts_weights(fn):
        values = np.asarray(_call(fn, cols, names, weights=counts), dtype=float)
        if values.shape == (n_boot,):
            return values
    out = np.empty(n_boot)
    for b in range(n_boot):
        value = _call(fn, [c[idx[b]] for c in cols], names)
        out[b] = np.nan if value is None else float(value)
    return out


def _interval(values: np.ndarray, alpha: float) -> list[float] | None:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return [float(low), float(high)]


def bootstrap_ci(
    metric_fn: Callable[..., Any], data: Data, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> list[float] | None:
    """[low, high] percentile interval of metric_fn(*data) over `n_boot` resamples of the items.

    `data`: equal-length columns (a sequence, passed positionally, or a mapping, passed by name); one entry per
    resampling unit (a question for the single task, a pair for the pairwise task). None for no items.
    """
    cols, names = _columns(data)
    if not cols or not len(cols[0]) or n_boot < 1:
        return None
    draws = resample_indices(len(cols[0]), n_boot, seed)
    return _interval(_replicates(metric_fn, cols, names, draws), alpha)


def paired_bootstrap(
    base_items: Mapping[Hashable, Sequence[Any]],
    cond_items: Mapping[Hashable, Sequence[Any]],
    metric_fn: Callable[..., Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The change metric(cond) - metric(base) on the same items, with a percentile interval and p-value.

    `base_items` / `cond_items` map an item id to metric_fn's arguments for that item: a named tuple (passed by
    name, e.g. metaconf.metrics.items.SingleItem) or a plain tuple (passed positionally); only ids present in both
    count, and each resample draws the same ids for both. The two-sided p-value is
    2 * min(P*(diff <= 0), P*(diff >= 0)) with the +1 correction, capped at 1: a small value says the interval
    excludes zero, i.e. evidence of a change. Returns {"n", "base", "value", "diff", "ci", "p_value"}.
    """
    common = sorted(set(base_items) & set(cond_items), key=lambda k: (str(type(k)), str(k)))
    result: dict[str, Any] = {"n": len(common), "base": None, "value": None, "diff": None, "ci": None, "p_value": None}
    if not common:
        return result
    (base_cols, names), (cond_cols, _) = _item_columns(base_items, common), _item_columns(cond_items, common)
    base, value = _call(metric_fn, base_cols, names), _call(metric_fn, cond_cols, names)
    result["base"] = None if base is None else float(base)
    result["value"] = None if value is None else float(value)
    if base is None or value is None:
        return result
    result["diff"] = float(value) - float(base)
    if n_boot < 1:
        return result
    draws = resample_indices(len(common), n_boot, seed)
    diffs = _replicates(metric_fn, cond_cols, names, draws) - _replicates(metric_fn, base_cols, names, draws)
    diffs = diffs[np.isfinite(diffs)]
    result["ci"] = _interval(diffs, alpha)
    if diffs.size:
        below = (1 + np.count_nonzero(diffs <= 0)) / (diffs.size + 1)
        above = (1 + np.count_nonzero(diffs >= 0)) / (diffs.size + 1)
        result["p_value"] = float(min(1.0, 2 * min(below, above)))
    return result
