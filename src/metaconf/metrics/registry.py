"""Every metric of metrics.json, named once: its function over the item columns, its label, which way is better,
its task, and where the report shows it. The summary, the findings, the tables and the plots all read this list.

Item columns (named; metaconf.metrics.items): single task `SingleItem` (confidence, correct, parsed,
has_confidence); pairwise task `PairItem` (choice, correct1, correct2, consistency1, consistency2, has_consistency,
p_first, has_p_first, parsed, has_choice). Each function takes the columns it needs by name (the others land in
`**_`) and optional bootstrap `weights` (see _weights.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from metaconf.metrics.calibration import adaptive_ece, brier, ece, overconfidence, smooth_bandwidth, smooth_ece
from metaconf.metrics.controls import accuracy_at_coverage, aurc, collapse, ece_floor
from metaconf.metrics.discrimination import accuracy, auc_a, auc_c, auroc, pairwise_auc, parse_rate

TASK_NAMES = ("single", "pairwise")


@dataclass(frozen=True)
class Metric:
    """One metric of one task: how it is computed and how the report names, orders and reads it."""

    name: str  # the metrics.json key
    task: str  # "single" or "pairwise"
    fn: Callable[..., Any]  # item columns by name (+ weights=) -> value, or one value per weight row
    label: str  # in tables and plots
    better: str | None = None  # "lower", "higher", or None (neither: accuracy, parse rate, overconfidence)
    chance: float | None = None  # the value of a confidence that carries no signal (a dashed line in plots)
    column: int | None = None  # position in the report's results table (None: not a column of its own)
    headline: bool = False  # in the changes table, the headline figure and the transfer matrix
    contrast: bool = False  # compared between multitask and each single-task condition
    method: bool = False  # computed for each confidence method without fine-tuning (metaconf.baselines)
    method_compared: bool = False  # ... and compared with each trained condition (and shown in the report)
    note: str = ""  # the headline figure's second title line


def _mask(mask: Any, weights: Any) -> np.ndarray:
    """Bootstrap weights times a 0/1 mask of the items a metric uses (those whose value was read)."""
    mask = np.asarray(mask, dtype=float)
    return mask if weights is None else np.asarray(weights, dtype=float) * mask[None, :]


# ------------------------------------------------------------------------------------------ single-task columns
# Each function takes the item columns by name (metaconf.metrics.items: SingleItem, PairItem) and ignores the rest.
def _single(metric: Callable[..., Any]) -> Callable[..., Any]:
    """A calibration or discrimination metric over the items whose confidence was read."""

    def fn(*, confidence: Any, correct: Any, has_confidence: Any, weights: Any = None, **_: Any) -> Any:
        return metric(confidence, correct, weights=_mask(has_confidence, weights))

    return fn


def _single_accuracy(*, correct: Any, weights: Any = None, **_: Any) -> Any:
    return accuracy(correct, weights=weights)


def _parse_rate(*, parsed: Any, weights: Any = None, **_: Any) -> Any:
    return parse_rate(parsed, weights=weights)


def _smooth(*, confidence: Any, correct: Any, has_confidence: Any, weights: Any = None, **_: Any) -> Any:
    """Smooth ECE with the bandwidth chosen once on the full sample, then held fixed across resamples."""
    keep = np.asarray(has_confidence, dtype=float) > 0
    conf, correct = np.asarray(confidence), np.asarray(correct)
    if not keep.any():
        return smooth_ece(conf[keep], correct[keep]) if weights is None else np.full(np.shape(weights)[0], np.nan)
    sigma = smooth_bandwidth(conf[keep], correct[keep])
    return smooth_ece(confidence, correct, sigma, weights=_mask(has_confidence, weights))


def _at_coverage(coverage: float) -> Callable[..., Any]:
    """Accuracy of the `coverage` share of answers stated with the highest confidence (selective answering)."""

    def metric(confidence: Any, correct: Any, *, weights: Any = None) -> Any:
        return accuracy_at_coverage(confidence, correct, coverage, weights=weights)

    return _single(metric)


# ---------------------------------------------------------------------------------------- pairwise-task columns
def _pair_accuracy(*, correct1: Any, correct2: Any, weights: Any = None, **_: Any) -> Any:
    a1, a2 = accuracy(correct1, weights=weights), accuracy(correct2, weights=weights)
    return None if a1 is None else (a1 + a2) / 2


def _auc_c(
    *,
    choice: Any,
    consistency1: Any,
    consistency2: Any,
    has_consistency: Any,
    has_choice: Any,
    weights: Any = None,
    **_: Any,
) -> Any:
    mask = _mask(np.asarray(has_choice) * has_consistency, weights)
    return auc_c(choice, consistency1, consistency2, weights=mask)


def _auc_a(*, choice: Any, correct1: Any, correct2: Any, has_choice: Any, weights: Any = None, **_: Any) -> Any:
    return auc_a(choice, correct1, correct2, weights=_mask(has_choice, weights))


def _pairwise_auc(
    *, correct1: Any, correct2: Any, p_first: Any, has_p_first: Any, weights: Any = None, **_: Any
) -> Any:
    informative = np.asarray(has_p_first) * (np.asarray(correct1) != np.asarray(correct2))
    return pairwise_auc(p_first, correct1, weights=_mask(informative, weights))


def _headline(name: str, task: str, fn: Callable[..., Any], label: str, better: str, **more: Any) -> Metric:
    """A headline metric with a direction: in the changes table, the headline figure, the transfer matrix and
    the multitask contrasts."""
    return Metric(name, task, fn, label, better, headline=True, contrast=True, **more)


def _compared(name: str, metric: Callable[..., Any], label: str, better: str, **more: Any) -> Metric:
    """A single-task headline metric also computed for every baseline method and compared with the conditions."""
    return _headline(name, "single", _single(metric), label, better, method=True, method_compared=True, **more)


# ------------------------------------------------------------------------------------------------- the list
# order = the order of the keys in a metrics.json row
METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "single", _single_accuracy, "accuracy", column=0, headline=True, contrast=True, method=True),
    Metric("parse_rate", "single", _parse_rate, "parse rate", method=True),
    _compared("ece", ece, "ECE", "lower", column=1, note="lower is better"),
    Metric("adaptive_ece", "single", _single(adaptive_ece), "adaptive ECE", "lower", column=5),
    Metric("smooth_ece", "single", _smooth, "smooth ECE", "lower", column=4),
    Metric("brier", "single", _single(brier), "Brier score", "lower", column=3, contrast=True, method=True),
    Metric("overconfidence", "single", _single(overconfidence), "overconfidence", column=6),
    _compared("auroc", auroc, "AUROC", "higher", chance=0.5, column=2, note="0.5 = chance"),
    Metric("aurc", "single", _single(aurc), "AURC", "lower", method=True),
    Metric("accuracy_at_50", "single", _at_coverage(0.5), "accuracy at 50% coverage", "higher", method=True),
    Metric("accuracy_at_80", "single", _at_coverage(0.8), "accuracy at 80% coverage", "higher", method=True),
    Metric("accuracy", "pairwise", _pair_accuracy, "accuracy", column=0, headline=True, contrast=True),
    Metric("parse_rate", "pairwise", _parse_rate, "parse rate"),
    _headline("auc_c", "pairwise", _auc_c, "AUC_c", "higher", chance=0.5, column=1, note="agreement with consistency"),
    _headline("auc_a", "pairwise", _auc_a, "AUC_a", "higher", chance=0.5, column=2, note="agreement with correctness"),
    Metric("pairwise_auc", "pairwise", _pairwise_auc, "pairwise AUC", "higher", 0.5, column=3),
)
_BY_NAME = {m.name: m for m in METRICS}  # label, direction and chance agree across the tasks a name is in


SELECTIVE = ("aurc", "accuracy_at_50", "accuracy_at_80")  # selective answering: metaconf.metrics.controls


# ------------------------------------------------------------------------------------------ descriptors
@dataclass(frozen=True)
class Descriptor:
    """Values of a row without a bootstrap interval: what the stated confidences look like (collapse) or what a
    calibrated model stating them would show (the ECE noise floor). `fn` takes the item columns by name and
    returns the row's keys `keys`."""

    name: str
    task: str
    fn: Callable[..., dict[str, Any]]
    keys: tuple[str, ...]
    label: str


def _read(confidence: Any, has_confidence: Any) -> np.ndarray:
    return np.asarray(confidence, dtype=float)[np.asarray(has_confidence, dtype=float) > 0]


def _collapse(*, confidence: Any, has_confidence: Any, **_: Any) -> dict[str, Any]:
    return collapse(_read(confidence, has_confidence))


def _floor(*, confidence: Any, has_confidence: Any, **_: Any) -> dict[str, Any]:
    return ece_floor(_read(confidence, has_confidence))


DESCRIPTORS: tuple[Descriptor, ...] = (
    Descriptor("collapse", "single", _collapse, ("n_distinct", "top_share", "entropy", "collapsed"), "collapse"),
    Descriptor("ece_floor", "single", _floor, ("ece_floor", "ece_floor_range"), "ECE noise floor"),
)


def describe(task: str, cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every descriptor of a task over the items' columns (their keys with None for no items)."""
    out: dict[str, Any] = {}
    for d in DESCRIPTORS:
        if d.task == task:
            out.update(d.fn(**cols) if cols else dict.fromkeys(d.keys))
    return out


def task_metrics(task: str) -> dict[str, Metric]:
    """name -> metric of one task, in metrics.json order."""
    return {m.name: m for m in METRICS if m.task == task}


def task_functions(task: str) -> dict[str, Callable[..., Any]]:
    """name -> function of one task, in metrics.json order."""
    return {name: m.fn for name, m in task_metrics(task).items()}


def metric_info(name: str) -> Metric | None:
    """The metric called `name` (any task), or None for a name the registry does not know."""
    return _BY_NAME.get(name)


def label(name: str) -> str:
    """The metric's label for tables and plots (an unknown name shows as itself)."""
    found = _BY_NAME.get(name)
    return found.label if found else name


def better(name: str) -> str | None:
    """ "lower", "higher" or None: which way a change of this metric is an improvement."""
    found = _BY_NAME.get(name)
    return found.better if found else None


def columns(task: str) -> tuple[str, ...]:
    """The metrics the report's results table shows for a task, in column order."""
    shown = sorted((m.column, m.name) for m in METRICS if m.task == task and m.column is not None)
    return tuple(name for _, name in shown)


def headline_metrics(task: str | None = None) -> tuple[tuple[str, str], ...]:
    """(task, metric) of the headline metrics with a direction (ECE, AUROC, AUC_c, AUC_a), single task first."""
    return tuple((m.task, m.name) for m in METRICS if m.headline and m.better is not None and task in (None, m.task))


def headline_names() -> tuple[str, ...]:
    """Names of every headline metric (accuracy included), in metrics.json order."""
    return tuple(dict.fromkeys(m.name for m in METRICS if m.headline))


def contrast_names() -> tuple[str, ...]:
    """Names of the metrics compared between multitask and each single-task condition."""
    return tuple(dict.fromkeys(m.name for m in METRICS if m.contrast))


def method_metrics(compared: bool = False) -> tuple[str, ...]:
    """Names of the single-task metrics computed for the baseline methods (`compared`: those also compared with
    the trained conditions), in metrics.json order."""
    return tuple(m.name for m in METRICS if m.task == "single" and (m.method_compared if compared else m.method))
