"""Relative confidence: Bradley-Terry strengths fitted to a condition's pairwise choices, scored like a confidence.

The pairwise task asks which of two questions the model is more likely to get right. Each read choice is a win
of the chosen question over the other; P(i beats j) = sigmoid(s_i - s_j). The strengths s maximise the penalised
log-likelihood sum_(w, l) log sigmoid(s_w - s_l) - alpha * sum_i s_i^2 (choix's `opt_pairwise` objective), which
stays finite when a question wins or loses every comparison and centres the strengths of each disconnected part
of the design. Each question's strength then ranks it like a stated confidence: its AUROC against the condition's
grade on that question says whether the choices single out the questions it gets right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize

from metaconf.metrics.bootstrap import bootstrap_ci
from metaconf.metrics.discrimination import auroc

ALPHA = 0.1  # the penalty: a prior of about N(0, 1/(2 alpha)) on each strength


def fit_bradley_terry(n_items: int, comparisons: Sequence[tuple[int, int]], alpha: float = ALPHA) -> np.ndarray:
    """The penalised maximum-likelihood strengths of `n_items` items from (winner, loser) index pairs."""
    if alpha <= 0:
        raise ValueError("alpha must be positive (the penalty keeps the strengths finite)")
    if not n_items:
        return np.zeros(0)
    data = np.asarray(comparisons, dtype=int).reshape(-1, 2)
    win, lose = data[:, 0], data[:, 1]

    def objective(s: np.ndarray) -> tuple[float, np.ndarray]:
        margin = s[win] - s[lose]
        value = alpha * float(s @ s) + float(np.logaddexp(0.0, -margin).sum())
        z = 1.0 / (1.0 + np.exp(np.clip(margin, -500, 500)))  # d/dmargin of log(1 + e^-margin) is -z
        grad = 2 * alpha * s - np.bincount(win, z, n_items) + np.bincount(lose, z, n_items)
        return value, grad

    result = minimize(
        objective,
        np.zeros(n_items),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 2000},
    )
    return result.x


def comparisons_of(pairs: Sequence[Any]) -> tuple[list[str], list[tuple[int, int]]]:
    """The question ids in a set of pairwise predictions (first seen first) and each read choice as (winner,
    loser) indices; a pair whose choice was not read adds nothing."""
    index: dict[str, int] = {}
    wins = []
    for p in pairs:
        if p.choice is None:
            continue
        i, j = (index.setdefault(q, len(index)) for q in (p.id1, p.id2))
        wins.append((i, j) if p.choice == 1 else (j, i))
    return list(index), wins


def relative_row(
    pairs: Sequence[Any],
    grades: Mapping[str, bool],
    stated: Mapping[str, float | None],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The Bradley-Terry row of one (condition, dataset): the fitted strengths' AUROC against `grades` (question
    id -> the condition's single-task grade) with a bootstrap interval over questions (strengths held fixed), and
    the stated confidence's AUROC (`stated`: id -> confidence, None when unread) on the same questions."""
    ids, wins = comparisons_of(pairs)
    strengths = fit_bradley_terry(len(ids), wins)
    graded = [k for k, q in enumerate(ids) if q in grades]
    score = np.asarray([strengths[k] for k in graded])
    correct = np.asarray([float(grades[ids[k]]) for k in graded])
    value = auroc(score, correct) if graded else None
    with_stated = [k for k in graded if stated.get(ids[k]) is not None]
    stated_cols = (
        np.asarray([stated[ids[k]] for k in with_stated], dtype=float),
        np.asarray([float(grades[ids[k]]) for k in with_stated]),
    )
    stated_value = auroc(*stated_cols) if with_stated else None
    return {
        "n_questions": len(graded),
        "n_comparisons": len(wins),
        "penalty": ALPHA,
        "auroc": value,
        "auroc_ci": bootstrap_ci(auroc, (score, correct), n_boot, seed, alpha) if value is not None else None,
        "stated_auroc": stated_value,
        "stated_auroc_ci": bootstrap_ci(auroc, stated_cols, n_boot, seed, alpha) if stated_value is not None else None,
    }


def relative_section(predictions: Mapping[tuple[str, str, str], Sequence[Any]], boot: Any) -> dict[str, Any]:
    """metrics.json `relative` (metaconf.records.RelativeSection): one Bradley-Terry row per (condition, dataset)
    with pairwise predictions, graded by the same condition's single-task answers (`predictions`: validated rows
    keyed (condition, task, dataset); `boot`: the study's Resampling)."""
    rows = []
    for (condition, task, dataset), pairs in predictions.items():
        single = predictions.get((condition, "single", dataset))
        if task != "pairwise" or not single:
            continue
        grades = {r.id: bool(r.correct) for r in single}
        stated = {r.id: r.confidence for r in single}
        found = relative_row(pairs, grades, stated, boot.n_boot, boot.seed, boot.alpha)
        rows.append({"condition": condition, "dataset": dataset, **found})
    return {
        "model": "Bradley-Terry, penalised MLE: max sum log sigmoid(s_w - s_l) - alpha sum s^2",
        "alpha": ALPHA,
        "graded_by": "the condition's single-task answers",
        "interval": "bootstrap over questions, strengths held fixed",
        "rows": rows,
    }
