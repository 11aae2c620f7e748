"""metrics.json additions: the baseline methods side by side with the conditions, the teacher gap, and
metacognitive efficiency (meta-d′, M-ratio, type-2 AUROC) per condition and dataset.

- `baselines.rows`: per (method, dataset) the single-task metrics with 95% bootstrap intervals.
- `baselines.comparisons`: per (method, trained condition, dataset, metric) the paired difference
  condition − method on the questions both scored (same resamples for both).
- `baselines.teacher_gap`: per (trained condition, dataset) the share of the teacher's AUROC above chance that the
  condition recovered, (AUROC_condition − 0.5) / (AUROC_teacher − 0.5), with a paired bootstrap interval; null (with
  the reason) when the teacher is not above chance or either AUROC is undefined.
- `metacognition.rows`: per (condition, dataset) meta-d′, d′, M-ratio and type-2 AUROC with intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metaconf.baselines.stage import TEACHER, UNDEFINED
from metaconf.metrics.bootstrap import resample_indices
from metaconf.metrics.controls import selective_section
from metaconf.metrics.items import SingleItem, columns, method_items, single_items
from metaconf.metrics.metad import RATING_EDGES, metacognition
from metaconf.metrics.registry import method_metrics, task_functions
from metaconf.metrics.summary import Resampling, _clean, paired_fields, row_metrics, row_profile
from metaconf.records import (
    BaselinePrediction,
    Comparison,
    MetacognitionRow,
    MethodRow,
    Prediction,
    TeacherGap,
)

COMPARED = method_metrics(compared=True)
METHOD_METRICS = method_metrics()
SINGLE_FNS = task_functions("single")
METAD_BOOT = 200  # meta-d′ refits the MLE per resample: fewer resamples than the vectorised metrics
Items = dict[Any, SingleItem]


def _recovered_ci(t_cols: dict[str, np.ndarray], c_cols: dict[str, np.ndarray], boot: Resampling) -> list[float] | None:
    """Percentile interval of (AUROC_condition - 0.5) / (AUROC_teacher - 0.5) over the resamples where the teacher
    is above chance (None with fewer than 10 such resamples)."""
    auroc = SINGLE_FNS["auroc"]
    _, counts = resample_indices(len(next(iter(t_cols.values()))), boot.n_boot, boot.seed)
    tb = np.asarray(auroc(**t_cols, weights=counts), dtype=float)
    cb = np.asarray(auroc(**c_cols, weights=counts), dtype=float)
    ok = np.isfinite(tb) & np.isfinite(cb) & (tb > 0.5)
    if ok.sum() < 10:
        return None
    ratio = (cb[ok] - 0.5) / (tb[ok] - 0.5)
    return [float(v) for v in np.quantile(ratio, [boot.alpha / 2, 1 - boot.alpha / 2])]


def _teacher_gap(teacher: Items, cond: Items, boot: Resampling) -> dict[str, Any]:
    common = sorted(set(teacher) & set(cond), key=str)
    out: dict[str, Any] = {
        "n": len(common),
        "teacher_auroc": None,
        "condition_auroc": None,
        "recovered": None,
        "recovered_ci": None,
        "undefined": None,
    }
    if not common:
        out["undefined"] = "no questions in common"
        return out
    t_cols, c_cols = columns(teacher[k] for k in common), columns(cond[k] for k in common)
    t, c = _clean(SINGLE_FNS["auroc"](**t_cols)), _clean(SINGLE_FNS["auroc"](**c_cols))
    out["teacher_auroc"], out["condition_auroc"] = t, c
    if t is None or c is None:
        out["undefined"] = "an AUROC is undefined (one grade only)"
    elif t <= 0.5:
        out["undefined"] = "the teacher's AUROC is not above chance"
    else:
        out["recovered"] = (c - 0.5) / (t - 0.5)
        out["recovered_ci"] = _recovered_ci(t_cols, c_cols, boot) if boot.n_boot >= 1 else None
    return out


def _method_row(method: str, dataset: str, items: Items, info: Mapping[str, Any], boot: Resampling) -> dict[str, Any]:
    undefined = UNDEFINED.get(method, {})
    fns = {name: SINGLE_FNS[name] for name in METHOD_METRICS if name not in undefined}
    values = row_metrics(items, fns, boot)
    values = {key: values.get(key) for name in METHOD_METRICS for key in (name, f"{name}_ci")}  # registry order
    return MethodRow(
        method=method,
        dataset=dataset,
        domain=info.get("domain"),
        in_domain=bool(info.get("in_domain")),
        n=len(items),
        n_scored=int(sum(item.has_confidence for item in items.values())),
        **row_profile(items, "single"),
        **({"undefined": undefined} if undefined else {}),
        **values,
    ).to_row()


def _method_comparisons(
    method: str,
    dataset: str,
    items: Items,
    cond_items: Mapping[tuple[str, str], Items],
    trained: Sequence[str],
    boot: Resampling,
) -> list[dict[str, Any]]:
    """metric(condition) - metric(method) for each trained condition evaluated on `dataset`, paired."""
    return [
        Comparison(
            method=method,
            condition=condition,
            dataset=dataset,
            metric=metric,
            **paired_fields(boot.paired(items, cond_items[(condition, dataset)], SINGLE_FNS[metric]), "method_value"),
        ).to_row()
        for condition in trained
        if (condition, dataset) in cond_items
        for metric in COMPARED
        if metric not in UNDEFINED.get(method, {})
    ]


def _metacognition_row(condition: str, dataset: str, items: Items, boot: Resampling) -> dict[str, Any]:
    scored = [item for item in items.values() if item.has_confidence]
    conf, correct = [item.confidence for item in scored], [item.correct for item in scored]
    n_boot = min(boot.n_boot, METAD_BOOT)
    return MetacognitionRow(
        condition=condition,
        dataset=dataset,
        **metacognition(conf, correct, n_boot=n_boot, seed=boot.seed, alpha=boot.alpha),
    ).to_row()


def _read_items(items: Items) -> tuple[list[float], list[float]]:
    """(confidence, correct) of the items whose confidence was read."""
    read = [item for item in items.values() if item.has_confidence]
    return [item.confidence for item in read], [item.correct for item in read]


def baseline_metrics(
    predictions: Mapping[tuple[str, str, str], Sequence[Mapping[str, Any] | Prediction]],
    baselines: Mapping[tuple[str, str], Sequence[Mapping[str, Any] | BaselinePrediction]],
    datasets_info: Mapping[str, Mapping[str, Any]],
    trained: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """{"selective": {...}, "baselines": {...}, "metacognition": {...}} for metrics.json (see the module
    docstring; `selective`: the risk-coverage curves of every condition and method, metaconf.metrics.controls)."""
    boot = Resampling(n_boot, seed, alpha)
    by_method = {key: method_items(rows, ("baseline", *key)) for key, rows in baselines.items()}
    by_condition = {(c, d): single_items(rows, (c, t, d)) for (c, t, d), rows in predictions.items() if t == "single"}
    rows, comparisons = [], []
    for (method, dataset), items in by_method.items():
        rows.append(_method_row(method, dataset, items, datasets_info.get(dataset, {}), boot))
        comparisons += _method_comparisons(method, dataset, items, by_condition, trained, boot)
    gaps = [
        TeacherGap(
            condition=condition,
            dataset=dataset,
            teacher=TEACHER,
            **_teacher_gap(by_method[(TEACHER, dataset)], by_condition[(condition, dataset)], boot),
        ).to_row()
        for condition in trained
        for dataset in datasets_info
        if (TEACHER, dataset) in by_method and (condition, dataset) in by_condition
    ]
    return {
        "baselines": {
            "methods": list(dict.fromkeys(m for m, _ in baselines)),
            "teacher": TEACHER,
            "rows": rows,
            "comparisons": comparisons,
            "teacher_gap": gaps,
        },
        "metacognition": {
            "rating_edges": list(RATING_EDGES),
            "model": "symmetric type-1 SDT (c = 0, d′ = 2·Φ⁻¹(accuracy)); meta-d′ by maximum likelihood "
            "(Maniscalco & Lau 2012), cells padded by 1/(2K)",
            "n_boot": min(n_boot, METAD_BOOT),
            "rows": [_metacognition_row(c, d, items, boot) for (c, d), items in by_condition.items()],
        },
        "selective": selective_section(
            {key: _read_items(items) for key, items in by_condition.items()},
            {key: _read_items(items) for key, items in by_method.items()},
        ),
    }
