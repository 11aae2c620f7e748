"""metrics.json: one row of metrics with intervals per (condition, task, dataset), pooled rows, and the paired
comparison of every trained condition with the base model on the same items."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metaconf.conditions import BASE, TRAINED_CONDITIONS
from metaconf.errors import DataError
from metaconf.io import write_json
from metaconf.metrics.bootstrap import bootstrap_ci, paired_bootstrap
from metaconf.metrics.bradley_terry import relative_section
from metaconf.metrics.items import ITEM, SCORED, Key, columns, pairwise_items, single_items
from metaconf.metrics.registry import contrast_names, describe, task_functions
from metaconf.records import PREDICTION_MODELS, Comparison, MetricRow, Prediction, validate_rows

POOLED_NAMES = {True: "pooled in-domain", False: "pooled new-domain"}
# multitask vs each single-task condition: does mixing both tasks beat training on one? (report: "multitask vs
# single-task"); a pair is compared only where both conditions were evaluated
_SINGLE, _PAIRWISE, _MULTITASK = TRAINED_CONDITIONS
CONTRASTS = ((_MULTITASK, _SINGLE), (_MULTITASK, _PAIRWISE))
__all__ = [
    "CONTRASTS",
    "POOLED_NAMES",
    "Group",
    "Resampling",
    "paired_fields",
    "pairwise_items",
    "row_metrics",
    "row_profile",
    "single_items",
    "summarize",
    "write_metrics",
]


# --------------------------------------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Resampling:
    """How every interval of metrics.json is drawn: `n_boot` resamples from `seed`, coverage 1 - `alpha`."""

    n_boot: int = 1000
    seed: int = 0
    alpha: float = 0.05

    def interval(self, fn: Callable[..., Any], cols: Mapping[str, np.ndarray]) -> list[float] | None:
        return bootstrap_ci(fn, cols, n_boot=self.n_boot, seed=self.seed, alpha=self.alpha)

    def paired(self, reference: Mapping[Any, Any], items: Mapping[Any, Any], fn: Callable[..., Any]) -> dict[str, Any]:
        return paired_bootstrap(reference, items, fn, n_boot=self.n_boot, seed=self.seed, alpha=self.alpha)


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


def row_profile(items: Mapping[Any, Any], task: str) -> dict[str, Any]:
    """`{"profile": ...}` of a single-task row (collapse and the ECE noise floor; registry descriptors), else {}."""
    described = describe(task, columns(items.values()))
    return {"profile": described} if described else {}


def row_metrics(items: Mapping[Any, Any], fns: Mapping[str, Callable[..., Any]], boot: Resampling) -> dict[str, Any]:
    """Each metric over the items' named columns and its bootstrap interval, as `name`, `name_ci` (None when
    undefined or without items)."""
    cols = columns(items.values())
    out: dict[str, Any] = {}
    for name, fn in fns.items():
        out[name] = _clean(fn(**cols)) if items else None
        out[f"{name}_ci"] = boot.interval(fn, cols) if items and out[name] is not None else None
    return out


@dataclass
class Group:
    """The items of one (condition, task, dataset), or of a pooled group (`datasets`: the datasets pooled)."""

    condition: str
    task: str
    dataset: str
    domain: Any
    in_domain: bool
    items: dict[Any, Any] = field(default_factory=dict)
    datasets: list[str] | None = None

    @property
    def key(self) -> Key:
        return (self.condition, self.task, self.dataset)

    def row(self, boot: Resampling) -> dict[str, Any]:
        """The group's metrics.json row."""
        pooled = {"pooled": True, "datasets": self.datasets} if self.datasets is not None else {}
        items = self.items.values()
        return MetricRow(
            condition=self.condition,
            task=self.task,
            dataset=self.dataset,
            domain=self.domain,
            in_domain=self.in_domain,
            **pooled,
            n=len(self.items),
            n_parsed=int(sum(item.parsed for item in items)),
            n_scored=int(sum(getattr(item, SCORED[self.task]) for item in items)),
            **row_profile(self.items, self.task),
            **row_metrics(self.items, task_functions(self.task), boot),
        ).to_row()


# --------------------------------------------------------------------------------------------------- summary
def _groups(
    predictions: Mapping[Key, Iterable[Mapping[str, Any] | Prediction]], datasets_info: Mapping[str, Mapping[str, Any]]
) -> list[Group]:
    """One group per prediction file, its rows validated into items."""
    groups = []
    for key, rows in predictions.items():
        (condition, task, dataset), where = key, f"predictions {'__'.join(key)}"
        if task not in PREDICTION_MODELS:
            raise DataError(f"{where}: unknown task {task!r} (expected single or pairwise)")
        if dataset not in datasets_info:
            raise DataError(f"{where}: dataset {dataset!r} missing from the datasets info")
        records = validate_rows(PREDICTION_MODELS[task], rows, where)
        info = datasets_info[dataset]
        domain = info.get("domain") or next((r.domain for r in records), None)
        items = {r.key: ITEM[task](r) for r in records}
        groups.append(Group(condition, task, dataset, domain, bool(info.get("in_domain")), items))
    return groups


def _pooled(groups: list[Group]) -> list[Group]:
    """Per (condition, task): the in-domain datasets pooled into one group, and the new-domain ones into another."""
    pooled: dict[Key, Group] = {}
    for g in groups:
        name = POOLED_NAMES[g.in_domain]
        into = pooled.setdefault((g.condition, g.task, name), Group(g.condition, g.task, name, [], g.in_domain, {}, []))
        into.items.update(g.items)
        into.datasets.append(g.dataset)
        if g.domain not in into.domain:
            into.domain.append(g.domain)
    for into in pooled.values():
        into.domain = "+".join(str(d) for d in into.domain)
    return list(pooled.values())


def _compare(
    every: list[Group], reference: str, condition: str, boot: Resampling, metrics: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """metric(condition) - metric(reference) per task, dataset (or pooled group) and metric, paired."""
    by_key = {g.key: g for g in every}
    out = []
    for g in every:
        ref = by_key.get((reference, g.task, g.dataset))
        if g.condition != condition or ref is None:
            continue
        for name, fn in task_functions(g.task).items():
            if metrics is None or name in metrics:
                fields = paired_fields(boot.paired(ref.items, g.items, fn))
                out.append(
                    Comparison(
                        condition=condition,
                        reference=reference,
                        task=g.task,
                        dataset=g.dataset,
                        metric=name,
                        pooled=g.datasets is not None,
                        **fields,
                    ).to_row()
                )
    return out


def summarize(
    predictions: Mapping[Key, Iterable[Mapping[str, Any] | Prediction]],
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
    """metrics.json as a dict: {"model", "config", "rows", "pooled", "comparisons", "contrasts", "relative",
    "bootstrap"} (the fields of metaconf.records.Metrics; `relative`: Bradley-Terry strengths of the pairwise
    choices, metaconf.metrics.bradley_terry).

    `predictions`: (condition, task, dataset) -> prediction rows (dicts or metaconf.records predictions);
    `datasets_info`: dataset -> {"domain": str, "in_domain": bool}. Rows resample questions (single) or pairs
    (pairwise); `comparisons` hold metric(condition) - metric(base) on the items both evaluated, with interval and
    p-value; `contrasts` the same for each (condition, reference) pair of `contrasts`, e.g. multitask - single.
    """
    boot = Resampling(n_boot, seed, alpha)
    groups = _groups(predictions, datasets_info)
    validated = {
        key: validate_rows(PREDICTION_MODELS[key[1]], rows, f"predictions {'__'.join(key)}")
        for key, rows in predictions.items()
    }
    pooled = _pooled(groups)
    conditions = list(dict.fromkeys(g.condition for g in groups))
    every = groups + pooled
    return {
        "model": model,
        "config": dict(config or {}),
        "rows": [g.row(boot) for g in groups],
        "pooled": [g.row(boot) for g in pooled],
        "comparisons": [c for cond in conditions if cond != base for c in _compare(every, base, cond, boot)],
        "contrasts": [
            c
            for cond, ref in contrasts
            if {cond, ref} <= set(conditions)
            for c in _compare(every, ref, cond, boot, contrast_names())
        ],
        "bootstrap": {
            "n_boot": n_boot,
            "seed": seed,
            "alpha": alpha,
            "unit": "question (single task), pair (pairwise task)",
        },
        "relative": relative_section(validated, boot),
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
