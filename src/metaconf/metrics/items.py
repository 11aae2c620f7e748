"""The metrics' inputs: one item per question (single task) or pair (pairwise task), as named columns.

Prediction rows are validated through metaconf.records first, so a bad value is one line naming the group, the
row and the field. An unread value becomes a placeholder whose `has_...` column is 0: the metrics that need it
leave the item out, the counting metrics (accuracy, parse rate) keep it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from metaconf.records import BaselinePrediction, PairPrediction, SinglePrediction, validate_rows

Key = tuple[str, str, str]  # (condition, task, dataset), or ("baseline", method, dataset)


class SingleItem(NamedTuple):
    """A question of the single task. `parsed` (answer and confidence read) feeds the parse rate; calibration and
    discrimination use every item whose confidence was read (`has_confidence`), an unread answer counting as a
    wrong one, so a model cannot look calibrated by garbling its answers."""

    confidence: float  # 0 when unread
    correct: float
    parsed: float
    has_confidence: float


class PairItem(NamedTuple):
    """A pair of the pairwise task. `parsed` (choice and both answers read) feeds the parse rate; the pairwise
    metrics use every pair whose choice was read."""

    choice: int  # 1 when unread
    correct1: float
    correct2: float
    consistency1: float
    consistency2: float
    has_consistency: float
    p_first: float
    has_p_first: float
    parsed: float
    has_choice: float


def _where(key: Key) -> str:
    return f"predictions {'__'.join(key)}"


def single_item(row: SinglePrediction | BaselinePrediction) -> SingleItem:
    """The single-task item of one validated row."""
    read = row.confidence is not None
    return SingleItem(
        confidence=float(row.confidence or 0.0),
        correct=float(row.correct),
        parsed=float(row.parsed) if read else 0.0,
        has_confidence=float(read),
    )


def pair_item(row: PairPrediction) -> PairItem:
    """The pairwise item of one validated row."""
    c1, c2, p_first = row.consistency1, row.consistency2, row.p_first
    return PairItem(
        choice=row.choice or 1,
        correct1=float(row.correct1),
        correct2=float(row.correct2),
        consistency1=float(c1 or 0.0),
        consistency2=float(c2 or 0.0),
        has_consistency=float(c1 is not None and c2 is not None),
        p_first=float(p_first or 0.0),
        has_p_first=float(p_first is not None),
        parsed=float(row.parsed) if row.choice is not None else 0.0,
        has_choice=float(row.choice is not None),
    )


def single_items(rows: Iterable[Mapping[str, Any] | SinglePrediction], key: Key) -> dict[Any, SingleItem]:
    """(dataset, id) -> item, from prediction rows (dicts or records) of one group."""
    return {row.key: single_item(row) for row in validate_rows(SinglePrediction, rows, _where(key))}


def method_items(rows: Iterable[Mapping[str, Any] | BaselinePrediction], key: Key) -> dict[Any, SingleItem]:
    """(dataset, id) -> item, from one baseline method's rows on one dataset."""
    return {row.key: single_item(row) for row in validate_rows(BaselinePrediction, rows, _where(key))}


def pairwise_items(rows: Iterable[Mapping[str, Any] | PairPrediction], key: Key) -> dict[Any, PairItem]:
    """(dataset, id1, id2) -> item, from prediction rows (dicts or records) of one group."""
    return {row.key: pair_item(row) for row in validate_rows(PairPrediction, rows, _where(key))}


ITEM = {"single": single_item, "pairwise": pair_item}  # task -> the item of one validated prediction row
# the column that says an item enters its task's metrics (single: its confidence was read; pairwise: its choice)
SCORED = {"single": "has_confidence", "pairwise": "has_choice"}


def columns(items: Iterable[NamedTuple]) -> dict[str, np.ndarray]:
    """Items as named float columns (the metric functions' keyword arguments); {} for no items."""
    items = list(items)
    if not items:
        return {}
    return {name: np.asarray(col, dtype=float) for name, col in zip(items[0]._fields, zip(*items), strict=True)}
