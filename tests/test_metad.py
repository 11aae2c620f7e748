"""meta-d′ (Maniscalco & Lau 2012) against an independent maximum-likelihood fit, a simulation, and the
degenerate cases that must stay undefined."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from metaconf.metrics.metad import confidence_ratings, meta_d, meta_d_from_counts, metacognition


def independent_meta_d(n_r_s1: np.ndarray, n_r_s2: np.ndarray, k: int) -> float:
    """The general response-specific meta-SDT likelihood (two stimuli, two responses, separate type-2 criteria on
    each side; meta-c = 0 because the table is symmetric), fitted with Nelder-Mead from several starts.
    Count layout as in Maniscalco's code: [S1 response conf K..1, S2 response conf 1..K]."""

    def nll(p: np.ndarray) -> float:
        md = p[0]
        above = np.concatenate([[0.0], np.cumsum(np.exp(p[k:])), [np.inf]])
        below = np.concatenate([[0.0], -np.cumsum(np.exp(p[1:k])), [-np.inf]])
        total = 0.0
        for counts, mu in ((n_r_s1, -md / 2), (n_r_s2, md / 2)):
            p_s2 = (norm.cdf(above[1:], mu) - norm.cdf(above[:-1], mu)) / norm.sf(0, mu)
            p_s1 = (norm.cdf(below[:-1], mu) - norm.cdf(below[1:], mu)) / norm.cdf(0, mu)
            total += counts[:k][::-1] @ np.log(p_s1) + counts[k:] @ np.log(p_s2)
        return -total

    best = None
    for start in (0.5, 1.5, 3.0):
        res = minimize(
            nll,
            np.concatenate([[start], np.full(2 * (k - 1), -0.5)]),
            method="Nelder-Mead",
            options={"maxiter": 20000, "maxfev": 20000, "xatol": 1e-8, "fatol": 1e-10},
        )
        if best is None or res.fun < best.fun:
            best = res
    return float(best.x[0])


@pytest.mark.parametrize(
    "right,wrong",
    [
        ([3, 5, 9, 14], [8, 6, 3, 1]),
        ([10, 2, 0, 7], [4, 4, 1, 2]),
        ([1, 1, 1, 30], [5, 5, 5, 5]),
    ],
)
def test_meta_d_matches_an_independent_two_sided_fit(right, wrong):
    right, wrong = np.asarray(right, float), np.asarray(wrong, float)
    fit = meta_d_from_counts(right, wrong)
    used = (right + wrong) > 0
    r, w = right[used], wrong[used]
    k = len(r)
    pad = 1 / (2 * k)
    # the symmetric stimulus-response table: correct = stimulus S2 answered S2 (and its mirror for S1)
    n_r_s2 = np.concatenate([(w + pad)[::-1], r + pad])
    n_r_s1 = np.concatenate([(r + pad)[::-1], w + pad])
    assert fit is not None
    assert fit.meta_d == pytest.approx(independent_meta_d(n_r_s1, n_r_s2, k), abs=2e-3)
    acc = right.sum() / (right.sum() + wrong.sum())
    assert fit.d_prime == pytest.approx(norm.ppf(acc) - norm.ppf(1 - acc))


def test_an_ideal_observer_has_m_ratio_one():
    """Confidence read from the same evidence as the answer: meta-d′ recovers d′ (simulation, 20000 trials)."""
    rng = np.random.default_rng(7)
    d = 1.2
    stimulus = rng.choice([-1, 1], 20000)
    evidence = rng.normal(stimulus * d / 2, 1)
    correct = (np.sign(evidence) == stimulus).astype(float)
    confidence = 2 * norm.cdf(np.abs(evidence)) - 1  # monotone in |evidence|
    fit = meta_d(confidence, correct)
    assert fit.d_prime == pytest.approx(d, abs=0.06)
    assert fit.meta_d == pytest.approx(d, abs=0.12)
    assert fit.m_ratio == pytest.approx(1.0, abs=0.12)
    # confidence unrelated to the evidence: meta-d′ near 0
    noise = meta_d(rng.uniform(size=20000), correct)
    assert abs(noise.meta_d) < 0.15


def test_degenerate_cases_are_undefined():
    assert meta_d([0.9, 0.2, 0.6], [1, 1, 1]) is None  # all right
    assert meta_d([0.9, 0.2, 0.6], [0, 0, 0]) is None  # all wrong
    assert meta_d([0.8, 0.9, 0.85, 0.95], [1, 0, 1, 0]) is None  # one rating used
    out = metacognition([0.8, 0.9, 0.85, 0.95], [1, 0, 1, 0], n_boot=50)
    assert out["meta_d"] is None and out["m_ratio"] is None and out["d_prime"] is None
    assert out["meta_d_ci"] is None and out["ratings_used"] == 1
    # accuracy below one half: meta-d′ is defined, the M-ratio is not (d′ <= 0)
    low = meta_d([0.9, 0.1, 0.2, 0.3, 0.1], [1, 0, 0, 0, 0])
    assert low is not None and low.d_prime < 0 and low.m_ratio is None and low.meta_d > 0


def test_ratings_bins_and_bootstrap_intervals():
    assert confidence_ratings([0.0, 0.24, 0.25, 0.5, 0.74, 0.75, 1.0]).tolist() == [1, 1, 2, 3, 3, 4, 4]
    rng = np.random.default_rng(1)
    correct = rng.integers(0, 2, 120).astype(float)
    confidence = np.clip(0.5 + 0.35 * (correct - 0.5) + rng.normal(0, 0.2, 120), 0, 1)
    out = metacognition(confidence, correct, n_boot=100, seed=3)
    assert out["meta_d_ci"][0] <= out["meta_d"] <= out["meta_d_ci"][1]
    assert out["type2_auroc_ci"][0] <= out["type2_auroc"] <= out["type2_auroc_ci"][1]
    assert out["type2_auroc"] > 0.6 and out["meta_d"] > 0
    assert metacognition(confidence, correct, n_boot=100, seed=3) == out  # seeded
