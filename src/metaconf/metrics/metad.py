"""Metacognitive efficiency: meta-d′ and the M-ratio (Maniscalco & Lau 2012), and the type-2 AUROC.

A question-answering task has no stimulus classes, only answers that are right or wrong, so the type-1 model is
the symmetric, unbiased one (criterion c = 0): d′ = 2·Φ⁻¹(accuracy). Then meta-c = c·meta-d′/d′ = 0, both
responses have the same type-2 model, and the maximum-likelihood fit of Maniscalco & Lau reduces to one pooled
likelihood over correct and incorrect trials (derivation and conventions in docs/baselines.md):

    P(rating k | correct)   = [Φ(t_k − m/2) − Φ(t_{k−1} − m/2)] / Φ(m/2)
    P(rating k | incorrect) = [Φ(t_k + m/2) − Φ(t_{k−1} + m/2)] / Φ(−m/2)

with m = meta-d′ and type-2 criteria 0 = t_0 < t_1 < … < t_K = ∞ on the evidence axis. Confidence in [0, 1] is
binned into RATING_EDGES ratings; rating levels nobody used are dropped (a fit is invariant to them) and every cell
is padded by 1/(2K) (Hautus 1995, as in Maniscalco's `trials2counts`) so a perfect separation stays finite.
Undefined (None) when every answer is right, every answer is wrong, or one rating level is used; the M-ratio also
when d′ ≤ 0 (accuracy ≤ 0.5).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr, ndtri

from metaconf.metrics.bootstrap import resample_indices
from metaconf.metrics.discrimination import auroc

RATING_EDGES: tuple[float, ...] = (0.25, 0.5, 0.75)  # 4 ratings: [0, .25), [.25, .5), [.5, .75), [.75, 1]


def confidence_ratings(confidence: Any, edges: tuple[float, ...] = RATING_EDGES) -> np.ndarray:
    """Ratings 1..len(edges)+1 from confidences in [0, 1]; a value on an edge goes to the upper rating."""
    return np.digitize(np.asarray(confidence, dtype=float), edges, right=False) + 1


@dataclass(frozen=True)
class MetaD:
    d_prime: float
    meta_d: float
    m_ratio: float | None  # None when d′ <= 0
    ratings_used: int


def _neg_log_likelihood(params: np.ndarray, right: np.ndarray, wrong: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log-likelihood and its gradient in (m, log-increments of the criteria)."""
    m, steps = params[0], np.exp(params[1:])
    t = np.concatenate([[0.0], np.cumsum(steps), [np.inf]])
    a, b = t - m / 2, t + m / 2
    p_right = np.maximum(np.diff(ndtr(a)), 1e-300)
    p_wrong = np.maximum(np.diff(ndtr(b)), 1e-300)
    norm_right, norm_wrong = ndtr(m / 2), ndtr(-m / 2)
    n_right, n_wrong = right.sum(), wrong.sum()
    value = (
        -(right @ np.log(p_right) + wrong @ np.log(p_wrong))
        + n_right * np.log(norm_right)
        + n_wrong * np.log(norm_wrong)
    )
    pdf_a, pdf_b = _pdf(a), _pdf(b)
    pdf_half = _pdf(np.array([m / 2]))[0]
    d_m = (
        0.5 * right @ (np.diff(pdf_a) / p_right)
        - 0.5 * wrong @ (np.diff(pdf_b) / p_wrong)
        + 0.5 * n_right * pdf_half / norm_right
        - 0.5 * n_wrong * pdf_half / norm_wrong
    )
    inner = slice(1, -1)  # the free criteria t_1 .. t_{K-1}
    d_t = (-right[:-1] / p_right[:-1] + right[1:] / p_right[1:]) * pdf_a[inner] + (
        -wrong[:-1] / p_wrong[:-1] + wrong[1:] / p_wrong[1:]
    ) * pdf_b[inner]
    d_steps = steps * np.cumsum(d_t[::-1])[::-1]  # t_j depends on every step i <= j
    return float(value), np.concatenate([[d_m], d_steps])


def _pdf(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    finite = np.isfinite(x)
    out[finite] = np.exp(-0.5 * x[finite] ** 2) / np.sqrt(2 * np.pi)
    return out


@functools.lru_cache(maxsize=4096)
def _fit_counts(right: tuple[float, ...], wrong: tuple[float, ...]) -> float:
    """meta-d′ of one padded count table (cached: bootstrap resamples repeat tables)."""
    r, w = np.asarray(right), np.asarray(wrong)
    # start: criteria at the quantiles of the pooled evidence |x| (as if meta-d′ = 0), meta-d′ = 1
    share = np.cumsum((r + w)[:-1]) / (r + w).sum()
    t0 = np.maximum(np.diff(np.concatenate([[0.0], ndtri(0.5 + share / 2)])), 1e-3)
    best = None
    for m0 in (1.0, 3.0):
        result = minimize(_neg_log_likelihood, np.concatenate([[m0], np.log(t0)]), args=(r, w), jac=True, method="BFGS")
        if best is None or result.fun < best.fun:
            best = result
        if result.success:
            break
    return float(best.x[0])


def _table(
    ratings: np.ndarray, correct: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    levels = int(ratings.max()) if ratings.size else 0
    w = np.ones(len(ratings)) if weights is None else weights
    right = np.bincount(ratings - 1, weights=w * correct, minlength=levels)
    wrong = np.bincount(ratings - 1, weights=w * (1 - correct), minlength=levels)
    return right, wrong


def meta_d_from_counts(right: Any, wrong: Any) -> MetaD | None:
    """meta-d′ fit from counts per rating level (lowest first) of correct and incorrect answers; None if undefined."""
    right, wrong = np.asarray(right, dtype=float), np.asarray(wrong, dtype=float)
    used = (right + wrong) > 0
    n_right, n_wrong = right.sum(), wrong.sum()
    if n_right <= 0 or n_wrong <= 0 or used.sum() < 2:
        return None
    right, wrong = right[used], wrong[used]
    pad = 1.0 / (2 * len(right))
    d_prime = 2.0 * float(ndtri(n_right / (n_right + n_wrong)))
    meta = _fit_counts(tuple(right + pad), tuple(wrong + pad))
    return MetaD(
        d_prime=d_prime, meta_d=meta, m_ratio=meta / d_prime if d_prime > 0 else None, ratings_used=int(used.sum())
    )


def meta_d(confidence: Any, correct: Any, edges: tuple[float, ...] = RATING_EDGES) -> MetaD | None:
    """meta-d′, d′ and M-ratio of confidences in [0, 1] (binned into ratings) against correctness."""
    ratings = confidence_ratings(confidence, edges)
    right, wrong = _table(ratings, np.asarray(correct, dtype=float))
    return meta_d_from_counts(right, wrong)


def _interval(values: list[float], alpha: float) -> list[float] | None:
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)])
    if finite.size < 10:
        return None
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return [float(low), float(high)]


def metacognition(
    confidence: Any,
    correct: Any,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    edges: tuple[float, ...] = RATING_EDGES,
) -> dict[str, Any]:
    """meta-d′, d′, M-ratio and the type-2 AUROC (AUROC of the ratings against correctness) with percentile
    bootstrap intervals over items; every undefined value is None (resamples where it is undefined are dropped)."""
    conf = np.asarray(confidence, dtype=float)
    y = np.asarray(correct, dtype=float)
    ratings = confidence_ratings(conf, edges)
    fit = meta_d(conf, y, edges) if conf.size else None
    type2 = auroc(ratings.astype(float), y) if conf.size else None
    out: dict[str, Any] = {
        "n": int(conf.size),
        "ratings_used": int(len(np.unique(ratings))) if conf.size else 0,
        "d_prime": fit.d_prime if fit else None,
        "meta_d": fit.meta_d if fit else None,
        "m_ratio": fit.m_ratio if fit else None,
        "type2_auroc": type2,
        "meta_d_ci": None,
        "m_ratio_ci": None,
        "type2_auroc_ci": None,
    }
    if not conf.size or n_boot < 1:
        return out
    _, counts = resample_indices(conf.size, n_boot, seed)
    if type2 is not None:
        values = np.asarray(auroc(ratings.astype(float), y, weights=counts), dtype=float)
        out["type2_auroc_ci"] = _interval(list(values), alpha)
    if fit is not None:
        metas, ratios = [], []
        for row in counts:
            boot = meta_d_from_counts(*_table(ratings, y, row))
            metas.append(boot.meta_d if boot else None)
            ratios.append(boot.m_ratio if boot else None)
        out["meta_d_ci"] = _interval(metas, alpha)
        out["m_ratio_ci"] = _interval(ratios, alpha) if fit.m_ratio is not None else None
    return out
