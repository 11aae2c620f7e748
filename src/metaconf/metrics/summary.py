"""metrics.json: one row of metrics with intervals per (condition, task, dataset), pooled rows, and the paired
comparison of every trained condition with the base model on the same items."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from metaconf.conditions import BASE, TRAINED_CONDITIONS
from metaconf.errors import DataError
from metaconf.io import write_json
from metaconf.metrics.bootstrap import bootstrap_ci, paired_bootstrap
from metaconf.metrics.registry import contrast_names, task_functions

POOLED_NAMES = {True: "pooled in-domain", False: "pooled new-domain"}
# multitask vs each single-task condition: does mixing both tasks beat training on one? (report: "multitask vs
# single-task"); a pair is compared only where both conditions were evaluated
_SINGLE, _PAIRWISE, _MULTITASK = TRAINED_CONDITIONS
CONTRASTS = ((_MULTITASK, _SINGLE), (_MULTITASK, _PAIRWISE))
_CHOICES = {"1": 1, "2": 2, "q1": 1, "q2": 2, "first": 1, "second": 2}


# ------------------------------------------------------------------------------------------------ item columns
def _where(key: tuple[str, str, str], i: int, field: str) -> str:
    return f"predictions {'__'.join(key)}: row {i + 1}: field '{field}'"


def _flag(row: Mapping[str, Any], field: str, key: tuple[str, str, str], i: int) -> float:
    value = row.get(field)
    if not isinstance(value, (bool, int, np.bool_)) or value not in (0, 1):
        raise DataError(f"{_where(key, i, field)}: expected true/false, got {value!r}")
    return float(value)


def _unit(row: Mapping[str, Any], field: str, key: tuple[str, str, str], i: int) -> float | None:
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DataError(f"{_where(key, i, field)}: expected a number in [0, 1] or null, got {value!r}")
    return float(value)


def _choice(value: Any, key: tuple[str, str, str], i: int) -> int | None:
    if value is None:
        return None
    found = _CHOICES.get(str(value).strip().lower())
    if found is None:
        raise DataError(f"{_where(key, i, 'choice')}: expected 1 or 2 (or null), got {value!r}")
    return found


def single_items(rows: list[Mapping[str, Any]], key: tuple[str, str, str]) -> dict[Any, tuple]:
    """id -> (confidence, correct, parsed, has_confidence). `parsed` (answer and confidence read) feeds the parse
    rate; calibration and discrimination use every item whose confidence was read (`has_confidence`), an unread
    answer counting as a wrong one, so a model cannot look calibrated by garbling its answers."""
    items: dict[Any, tuple] = {}
    for i, row in enumerate(rows):
        conf = _unit(row, "confidence", key, i)
        parsed = _flag(row, "parsed", key, i) if conf is not None else 0.0
        items[(row.get("dataset"), row.get("id"))] = (
            conf or 0.0,
            _flag(row, "correct", key, i),
            parsed,
            float(conf is not None),
        )
    return items


def pairwise_items(rows: list[Mapping[str, Any]], key: tuple[str, str, str]) -> dict[Any, tuple]:
    """(id1, id2) -> (choice, correct1, correct2, consistency1, consistency2, has_consistency, p_first, has_p,
    parsed, has_choice); unread values are filled with placeholders whose weight is 0. `parsed` (choice and both
    answers read) feeds the parse rate; the pairwise metrics use every pair whose choice was read."""
    items: dict[Any, tuple] = {}
    for i, row in enumerate(rows):
        choice = _choice(row.get("choice"), key, i)
        parsed = _flag(row, "parsed", key, i) if choice is not None else 0.0
        c1, c2 = _unit(row, "consistency1", key, i), _unit(row, "consistency2", key, i)
        p_first = _unit(row, "p_first", key, i)
        items[(row.get("dataset"), row.get("id1"), row.get("id2"))] = (
            choice or 1,
            _flag(row, "correct1", key, i),
            _flag(row, "correct2", key, i),
            c1 or 0.0,
            c2 or 0.0,
            float(c1 is not None and c2 is not None),
            p_first or 0.0,
            float(p_first is not None),
            parsed,
            float(choice is not None),
        )
    return items


# task -> (its item columns from prediction rows, its metric functions from the registry)
TASKS = {
    task: (items, task_functions(task)) for task, items in (("single", single_items), ("pairwise", pairwise_items))
}


# --------------------------------------------------------------------------------------------------- summary
def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def paired_fields(result: dict[str, Any], reference: str = "base") -> dict[str, Any]:
    """A paired_bootstrap result as the fields of a comparison row: n, the reference's value (under `reference`),
    the condition's value, their difference with its interval, and the p-value; undefined values as None."""
    return {
        "n": result["n"],
        reference: _clean(result["base"]),
        "value": _clean(result["value"]),
        "diff": _clean(result["diff"]),
        "diff_ci": result["ci"],
        "p_value": result["p_value"],
    }


def _row_metrics(
    items: dict[Any, tuple], fns: dict[str, Callable[..., Any]], n_boot: int, seed: int, alpha: float
) -> dict[str, Any]:
    cols = [np.asarray(col, dtype=float) for col in zip(*items.values())] if items else []
    out: dict[str, Any] = {}
    for name, fn in fns.items():
        out[name] = _clean(fn(*cols)) if items else None
        out[f"{name}_ci"] = (
            bootstrap_ci(fn, cols, n_boot=n_boot, seed=seed, alpha=alpha) if items and out[name] is not None else None
        )
    return out


def summarize(
    predictions: Mapping[tuple[str, str, str], list[Mapping[str, Any]]],
    datasets_info: Mapping[str, Mapping[str, Any]],
    n_boot: int = 1000,
    seed: int = 0,
    *,
    model: Any = None,
    config: Mapping[str, Any] | None = None,
    alpha: float = 0.05,
    base: str = BASE,
    contrasts: tuple[tuple[str, str], ...] = CONTRASTS,
) -> dict[str, Any]:
    """metrics.json as a dict: {"model", "config", "rows", "pooled", "comparisons", "contrasts"}.

    `predictions`: (condition, task, dataset) -> prediction rows (docs/architecture.md); `datasets_info`:
    dataset -> {"domain": str, "in_domain": bool}. Rows resample questions (single) or pairs (pairwise);
    `comparisons` hold metric(condition) - metric(base) on the items both evaluated, with interval and p-value;
    `contrasts` the same for each (condition, reference) pair of `contrasts`, e.g. multitask - single.
    """
    groups: dict[tuple[str, str, str], dict[Any, tuple]] = {}
    meta: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, rows in predictions.items():
        condition, task, dataset = key
        if task not in TASKS:
            raise DataError(f"predictions {'__'.join(key)}: unknown task {task!r} (expected single or pairwise)")
        if dataset not in datasets_info:
            raise DataError(f"predictions {'__'.join(key)}: dataset {dataset!r} missing from the datasets info")
        info = datasets_info[dataset]
        groups[key] = TASKS[task][0](list(rows), key)
        meta[key] = {
            "condition": condition,
            "task": task,
            "dataset": dataset,
            "domain": info.get("domain") or next((r.get("domain") for r in rows), None),
            "in_domain": bool(info.get("in_domain")),
        }

    pooled_groups: dict[tuple[str, str, str], dict[Any, tuple]] = {}
    for key, items in groups.items():
        m = meta[key]
        pkey = (m["condition"], m["task"], POOLED_NAMES[m["in_domain"]])
        pooled_groups.setdefault(pkey, {}).update(items)
        pm = meta.setdefault(
            pkey,
            {
                "condition": m["condition"],
                "task": m["task"],
                "dataset": pkey[2],
                "domain": [],
                "in_domain": m["in_domain"],
                "pooled": True,
                "datasets": [],
            },
        )
        pm["datasets"].append(m["dataset"])
        if m["domain"] not in pm["domain"]:
            pm["domain"].append(m["domain"])
    for pkey in pooled_groups:
        meta[pkey]["domain"] = "+".join(str(d) for d in meta[pkey]["domain"])

    def make_row(key: tuple[str, str, str], items: dict[Any, tuple]) -> dict[str, Any]:
        fns = TASKS[key[1]][1]
        parsed = sum(item[-2] for item in items.values())
        scored = sum(item[-1] for item in items.values())
        return {
            **meta[key],
            "n": len(items),
            "n_parsed": int(parsed),
            "n_scored": int(scored),
            **_row_metrics(items, fns, n_boot, seed, alpha),
        }

    every = {**groups, **pooled_groups}

    def compare(reference: str, condition: str, metrics: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """metric(condition) - metric(reference) per task, dataset (or pooled group) and metric, paired."""
        out = []
        for (cond, task, dataset), items in every.items():
            ref_items = every.get((reference, task, dataset))
            if cond != condition or ref_items is None:
                continue
            for name, fn in TASKS[task][1].items():
                if metrics is not None and name not in metrics:
                    continue
                result = paired_bootstrap(ref_items, items, fn, n_boot=n_boot, seed=seed, alpha=alpha)
                out.append(
                    {
                        "condition": condition,
                        "reference": reference,
                        "task": task,
                        "dataset": dataset,
                        "metric": name,
                        "pooled": (cond, task, dataset) in pooled_groups,
                        **paired_fields(result),
                    }
                )
        return out

    conditions = list(dict.fromkeys(key[0] for key in groups))
    comparisons = [c for condition in conditions if condition != base for c in compare(base, condition)]
    contrast_rows = [
        c
        for condition, reference in contrasts
        if {condition, reference} <= set(conditions)
        for c in compare(reference, condition, contrast_names())
    ]
    return {
        "model": model,
        "config": dict(config or {}),
        "rows": [make_row(key, items) for key, items in groups.items()],
        "pooled": [make_row(key, items) for key, items in pooled_groups.items()],
        "comparisons": comparisons,
        "contrasts": contrast_rows,
        "bootstrap": {
            "n_boot": n_boot,
            "seed": seed,
            "alpha": alpha,
            "unit": "question (single task), pair (pairwise task)",
        },
    }


def _strict(value: Any) -> Any:
    """A copy that strict JSON can hold: NaN and infinities (also numpy's) become None, numpy numbers plain ones."""
    if isinstance(value, Mapping):
        return {key: _strict(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_metrics(path: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write metrics.json atomically as strict JSON: an undefined value (NaN, infinity) is written as null."""
    return write_json(path, _strict(summary), allow_nan=False)
