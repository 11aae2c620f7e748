"""Controls that tell a learnt confidence from a learnt format: selective answering (risk-coverage, AURC, accuracy at
a coverage), collapse (how many distinct values a model states) and the ECE noise floor.

Selective answering takes `confidence`, `correct` and optional bootstrap `weights` like every metric of this
package (see `_weights.py`); ties in confidence are broken at random, in expectation (exact, no draws), so a model
that states one value everywhere gets the risk of answering at random: no benefit from abstaining.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import digamma

from metaconf.metrics._weights import as_binary, as_values, as_weights, finish, ratio, same_length

CONSTANT = "constant"  # the constant predictor's method name (metaconf.baselines; the findings compare with it)
COLLAPSE_SHARE = 0.9  # a row that states one value on at least this share of its items is "collapsed"
FLOOR_DRAWS = 1000  # simulated outcome sets per noise floor
FLOOR_RANGE = (0.025, 0.975)  # the floor's shown range: the middle 95% of the simulated ECEs


# ------------------------------------------------------------------------------------------ selective answering
def _tie_groups(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The items' order by confidence, highest first, and each sorted item's tie group (0 = most confident)."""
    order = np.argsort(-c, kind="stable")
    sorted_c = c[order]
    group = np.concatenate([[0], np.cumsum(sorted_c[1:] != sorted_c[:-1])]) if c.size else np.zeros(0, int)
    return order, group.astype(int), int(group[-1]) + 1 if c.size else 0


def _grouped(c: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per weight row and tie group (most confident first): the group's weight and its weighted errors."""
    order, group, n_groups = _tie_groups(c)
    rows = w.shape[0]
    offsets = (np.arange(rows)[:, None] * n_groups + group[None, :]).reshape(-1)
    ws = w[:, order]
    weight = np.bincount(offsets, weights=ws.reshape(-1), minlength=rows * n_groups).reshape(rows, n_groups)
    errors = np.bincount(
        offsets, weights=(ws * (1 - y[order])[None, :]).reshape(-1), minlength=rows * n_groups
    ).reshape(rows, n_groups)
    return weight, errors


def _harmonic(x: np.ndarray) -> np.ndarray:
    """H(x) = sum_{k=1}^{x} 1/k, extended to real x >= 0 (digamma(x + 1) + Euler's gamma)."""
    return digamma(np.asarray(x, dtype=float) + 1.0) + np.euler_gamma


def aurc(confidence: Any, correct: Any, *, weights: Any = None) -> Any:
    """Area under the risk-coverage curve (Geifman et al. 2019): the mean over k = 1..n of the error rate among
    the k most confident answers (lower is better; a constant confidence gives the overall error rate).

    With tie groups g (most confident first) of weight W_g, errors E_g, r_g = E_g / W_g, C_g the weight up to
    and with g and E_<g the errors before g, the expected risk at k inside g is (E_<g + (k - C_<g) r_g) / k, so
    AURC = (1/W) sum_g [(E_<g - r_g C_<g) (H(C_g) - H(C_<g)) + r_g W_g] with H the harmonic numbers.
    """
    c = as_values(confidence, "confidence")
    y = as_binary(correct, "correct")
    w, single = as_weights(weights, same_length(confidence=c, correct=y))
    weight, errors = _grouped(c, y, w)
    upto = np.cumsum(weight, axis=1)
    before, errors_before = upto - weight, np.cumsum(errors, axis=1) - errors
    rate = np.nan_to_num(ratio(errors, weight))
    area = (errors_before - rate * before) * (_harmonic(upto) - _harmonic(before)) + rate * weight
    return finish(ratio(area.sum(axis=1), w.sum(axis=1)), single)


def accuracy_at_coverage(confidence: Any, correct: Any, coverage: float, *, weights: Any = None) -> Any:
    """Accuracy of the `coverage` share of answers with the highest confidence (ties broken at random, in
    expectation): 1 - (E_<g + (q W - C_<g) r_g) / (q W) at the tie group g holding position q W."""
    if not 0 < coverage <= 1:
        raise ValueError("coverage must lie in (0, 1]")
    c = as_values(confidence, "confidence")
    y = as_binary(correct, "correct")
    w, single = as_weights(weights, same_length(confidence=c, correct=y))
    if not c.size:
        return finish(np.full(w.shape[0], np.nan), single)
    weight, errors = _grouped(c, y, w)
    upto = np.cumsum(weight, axis=1)
    target = coverage * w.sum(axis=1)
    g = np.minimum((upto < target[:, None] - 1e-12).sum(axis=1), weight.shape[1] - 1)
    rows = np.arange(w.shape[0])
    before = upto[rows, g] - weight[rows, g]
    errors_before = np.cumsum(errors, axis=1)[rows, g] - errors[rows, g]
    rate = np.nan_to_num(ratio(errors[rows, g], weight[rows, g]))
    risk = ratio(errors_before + (target - before) * rate, target)
    return finish(1.0 - risk, single)


def risk_coverage(confidence: Any, correct: Any, grid: Any) -> list[float | None]:
    """The risk-coverage curve at the coverages of `grid` (each in (0, 1]): error rate of the most confident
    answers, ties broken at random in expectation; None for no items."""
    return [None if (acc := accuracy_at_coverage(confidence, correct, q)) is None else 1.0 - acc for q in grid]


# ----------------------------------------------------------------------------------------------------- collapse
def collapse(confidence: Any) -> dict[str, Any]:
    """How varied the stated confidences are: the number of distinct values, the share of the most common one,
    their entropy in bits, and `collapsed` (one value on at least COLLAPSE_SHARE of the items); values equal to
    1e-9 count as one. All None for no items."""
    c = as_values(confidence, "confidence")
    if not c.size:
        return {"n_distinct": None, "top_share": None, "entropy": None, "collapsed": None}
    _, counts = np.unique(np.round(c, 9), return_counts=True)
    p = counts / counts.sum()
    top = float(p.max())
    return {
        "n_distinct": int(counts.size),
        "top_share": top,
        "entropy": float(-(p * np.log2(p)).sum()) + 0.0,
        "collapsed": top >= COLLAPSE_SHARE,
    }


# ---------------------------------------------------------------------------------------------- ECE noise floor
def ece_floor_draws(confidence: Any, n_bins: int = 10, draws: int = FLOOR_DRAWS, seed: int = 0) -> np.ndarray:
    """The ECE of a perfectly calibrated model with these stated confidences: outcomes drawn as
    Bernoulli(confidence) per item, `draws` times (seeded), each scored with the report's equal-width ECE."""
    c = as_values(confidence, "confidence", unit=True)
    if not c.size:
        return np.zeros(0)
    bins = np.minimum(np.floor(c * n_bins).astype(int), n_bins - 1)
    onehot = np.zeros((c.size, n_bins))
    onehot[np.arange(c.size), bins] = 1.0
    outcomes = np.random.default_rng(seed).random((draws, c.size)) < c[None, :]
    gap = (outcomes - c[None, :]) @ onehot
    return np.abs(gap).sum(axis=1) / c.size


def ece_floor(confidence: Any, n_bins: int = 10, draws: int = FLOOR_DRAWS, seed: int = 0) -> dict[str, Any]:
    """{"ece_floor": median, "ece_floor_range": [2.5%, 97.5%]} of the calibrated model's simulated ECE; None
    for no items. An observed ECE inside the range is what calibration itself would show at this n."""
    values = ece_floor_draws(confidence, n_bins, draws, seed)
    if not values.size:
        return {"ece_floor": None, "ece_floor_range": None}
    low, high = np.quantile(values, FLOOR_RANGE)
    return {"ece_floor": float(np.median(values)), "ece_floor_range": [float(low), float(high)]}


COVERAGE_GRID = tuple(round(0.05 * k, 2) for k in range(1, 21))  # the risk-coverage curves' coverages


def selective_section(
    conditions: dict[tuple[str, str], tuple[Any, Any]], methods: dict[tuple[str, str], tuple[Any, Any]]
) -> dict[str, Any]:
    """metrics.json `selective` (metaconf.records.SelectiveSection): the risk-coverage curve of every (condition,
    dataset) and (method, dataset), each given as (confidence, correct) of the items whose confidence was read."""
    curves = [
        {kind: name, "dataset": dataset, "n": len(conf), "risk": risk_coverage(conf, correct, COVERAGE_GRID)}
        for kind, groups in (("condition", conditions), ("method", methods))
        for (name, dataset), (conf, correct) in groups.items()
    ]
    return {
        "coverage": list(COVERAGE_GRID),
        "ties": "broken at random, in expectation (exact)",
        "curves": curves,
    }
