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

from metaconf.baselines.stage import TEACHER
from metaconf.metrics.bootstrap import paired_bootstrap, resample_indices
from metaconf.metrics.metad import RATING_EDGES, metacognition
from metaconf.metrics.registry import method_metrics, task_functions
from metaconf.metrics.summary import _clean, _row_metrics, paired_fields, single_items

COMPARED = method_metrics(compared=True)
METHOD_METRICS = method_metrics()
SINGLE_FNS = task_functions("single")
METAD_BOOT = 200  # meta-d′ refits the MLE per resample: fewer resamples than the vectorised metrics


def _teacher_gap(
    teacher: dict[Any, tuple], cond: dict[Any, tuple], n_boot: int, seed: int, alpha: float
) -> dict[str, Any]:
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
    t_cols = [np.asarray(c, dtype=float) for c in zip(*(teacher[k] for k in common))]
    c_cols = [np.asarray(c, dtype=float) for c in zip(*(cond[k] for k in common))]
    auroc = SINGLE_FNS["auroc"]
    t, c = _clean(auroc(*t_cols)), _clean(auroc(*c_cols))
    out["teacher_auroc"], out["condition_auroc"] = t, c
    if t is None or c is None:
        out["undefined"] = "an AUROC is undefined (one grade only)"
        return out
    if t <= 0.5:
        out["undefined"] = "the teacher's AUROC is not above chance"
        return out
    out["recovered"] = (c - 0.5) / (t - 0.5)
    if n_boot >= 1:
        _, counts = resample_indices(len(common), n_boot, seed)
        tb = np.asarray(auroc(*t_cols, weights=counts), dtype=float)
        cb = np.asarray(auroc(*c_cols, weights=counts), dtype=float)
        ok = np.isfinite(tb) & np.isfinite(cb) & (tb > 0.5)
        if ok.sum() >= 10:
            ratio = (cb[ok] - 0.5) / (tb[ok] - 0.5)
            out["recovered_ci"] = [float(v) for v in np.quantile(ratio, [alpha / 2, 1 - alpha / 2])]
    return out


def baseline_metrics(
    predictions: Mapping[tuple[str, str, str], list[Mapping[str, Any]]],
    baselines: Mapping[tuple[str, str], list[Mapping[str, Any]]],
    datasets_info: Mapping[str, Mapping[str, Any]],
    trained: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """{"baselines": {...}, "metacognition": {...}} for metrics.json (see the module docstring)."""
    fns = {name: SINGLE_FNS[name] for name in METHOD_METRICS}
    method_items = {key: single_items(list(rows), ("baseline", *key)) for key, rows in baselines.items()}
    cond_items = {
        (c, d): single_items(list(rows), (c, t, d)) for (c, t, d), rows in predictions.items() if t == "single"
    }
    rows, comparisons, gaps = [], [], []
    for (method, dataset), items in method_items.items():
        info = datasets_info.get(dataset, {})
        rows.append(
            {
                "method": method,
                "dataset": dataset,
                "domain": info.get("domain"),
                "in_domain": bool(info.get("in_domain")),
                "n": len(items),
                "n_scored": int(sum(item[3] for item in items.values())),
                **_row_metrics(items, fns, n_boot, seed, alpha),
            }
        )
        for condition in trained:
            if (condition, dataset) not in cond_items:
                continue
            for metric in COMPARED:
                result = paired_bootstrap(
                    items, cond_items[(condition, dataset)], SINGLE_FNS[metric], n_boot=n_boot, seed=seed, alpha=alpha
                )
                comparisons.append(
                    {
                        "method": method,
                        "condition": condition,
                        "dataset": dataset,
                        "metric": metric,
                        **paired_fields(result, reference="method_value"),
                    }
                )
    for condition in trained:
        for dataset in datasets_info:
            teacher = method_items.get((TEACHER, dataset))
            if teacher is None or (condition, dataset) not in cond_items:
                continue
            gaps.append(
                {
                    "condition": condition,
                    "dataset": dataset,
                    "teacher": TEACHER,
                    **_teacher_gap(teacher, cond_items[(condition, dataset)], n_boot, seed, alpha),
                }
            )
    meta_rows = []
    for (condition, dataset), items in cond_items.items():
        scored = [item for item in items.values() if item[3]]
        conf = [item[0] for item in scored]
        correct = [item[1] for item in scored]
        meta_rows.append(
            {
                "condition": condition,
                "dataset": dataset,
                **metacognition(conf, correct, n_boot=min(n_boot, METAD_BOOT), seed=seed, alpha=alpha),
            }
        )
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
            "rows": meta_rows,
        },
    }
