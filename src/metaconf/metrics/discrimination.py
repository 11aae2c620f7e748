"""Discrimination and counting metrics: accuracy, parse rate, AUROC, and the pairwise AUC_c, AUC_a, pairwise AUC.

All take optional bootstrap `weights` (see `_weights.py`) and return None (NaN per row with 2-D weights) when the
metric is undefined, e.g. AUROC with one class only or AUC_a without a mixed-outcome pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metaconf.errors import DataError
from metaconf.metrics._weights import as_binary, as_values, as_weights, finish, group_sums, ratio, same_length


def accuracy(correct: Any, *, weights: Any = None) -> Any:
    """Share of correct answers (None for no items)."""
    y = as_binary(correct, "correct")
    w, single = as_weights(weights, len(y))
    return finish(ratio(w @ y, w.sum(axis=1)), single)


def parse_rate(parsed: Any, *, weights: Any = None) -> Any:
    """Share of items whose output could be read (confidence / choice found); None for no items."""
    p = as_binary(parsed, "parsed")
    w, single = as_weights(weights, len(p))
    return finish(ratio(w @ p, w.sum(axis=1)), single)


def auroc(confidence: Any, correct: Any, *, weights: Any = None) -> Any:
    """P(a correct item gets higher confidence than an incorrect one); ties count half; None with one class only.

    Computed as the Mann-Whitney statistic over distinct confidence values, so weights (bootstrap counts) apply
    exactly: sum_u W+(u) (W-(< u) + W-(u) / 2) / (W+ W-).
    """
    c = as_values(confidence, "confidence")
    y = as_binary(correct, "correct")
    n = same_length(confidence=c, correct=y)
    w, single = as_weights(weights, n)
    values, groups = np.unique(c, return_inverse=True)
    pos = group_sums(w * y[None, :], groups, len(values))
    neg = group_sums(w * (1 - y)[None, :], groups, len(values))
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + neg / 2)).sum(axis=1)
    return finish(ratio(wins, pos.sum(axis=1) * neg.sum(axis=1)), single)


def _choices(choice: Any) -> np.ndarray:
    arr = as_values(choice, "choice")
    if arr.size and not np.all((arr == 1) | (arr == 2)):
        bad = int(np.argmax((arr != 1) & (arr != 2)))
        raise DataError(f"choice: value {float(arr[bad])!r} at index {bad} is not 1 or 2")
    return arr


def _agreement(choice: np.ndarray, first_better: np.ndarray, eligible: np.ndarray, weights: Any) -> Any:
    w, single = as_weights(weights, len(choice))
    agree = ((choice == 1) & (first_better == 1)) | ((choice == 2) & (first_better == 0))
    return finish(ratio(w @ (agree * eligible), w @ eligible), single)


def auc_c(choice: Any, consistency1: Any, consistency2: Any, *, weights: Any = None) -> Any:
    """Share of pairs with different consistency where the chosen question (1 or 2) is the more consistent one.

    Pairs with equal consistency have no right choice and are left out; None when no pair is left.
    """
    ch = _choices(choice)
    c1 = as_values(consistency1, "consistency1", unit=True)
    c2 = as_values(consistency2, "consistency2", unit=True)
    same_length(choice=ch, consistency1=c1, consistency2=c2)
    return _agreement(ch, (c1 > c2).astype(float), (c1 != c2).astype(float), weights)


def auc_a(choice: Any, correct1: Any, correct2: Any, *, weights: Any = None) -> Any:
    """Share of mixed-outcome pairs (one answer right, one wrong) where the model chose the one it got right."""
    ch = _choices(choice)
    y1 = as_binary(correct1, "correct1")
    y2 = as_binary(correct2, "correct2")
    same_length(choice=ch, correct1=y1, correct2=y2)
    return _agreement(ch, y1, (y1 != y2).astype(float), weights)


def pairwise_auc(p_first: Any, first_better: Any, *, weights: Any = None) -> Any:
    """A true AUC from P(choice = question 1): how well p_first ranks pairs whose first question is the better one.

    `first_better` is 1 where question 1 is the right choice (in the summary: mixed-outcome pairs, 1 where the
    model answered question 1 correctly). Ties count half; None with one class only.
    """
    return auroc(as_values(p_first, "p_first", unit=True), first_better, weights=weights)
