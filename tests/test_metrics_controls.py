"""Selective answering, collapse and the ECE noise floor against direct computations and closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from metaconf.metrics.controls import (
    accuracy_at_coverage,
    aurc,
    collapse,
    ece_floor,
    ece_floor_draws,
    risk_coverage,
)


def _direct_aurc(conf, correct) -> float:
    """Mean over k of the error rate among the k most confident, averaged over every order of the ties."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    values = []
    for perm in itertools.permutations(range(len(conf))):
        order = sorted(perm, key=lambda i: -conf[i])  # stable: ties keep the permutation's order
        errors = np.cumsum(1 - correct[order])
        values.append(np.mean(errors / np.arange(1, len(conf) + 1)))
    return float(np.mean(values))


def _direct_accuracy(conf, correct, k) -> float:
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    values = []
    for perm in itertools.permutations(range(len(conf))):
        order = sorted(perm, key=lambda i: -conf[i])
        values.append(correct[order][:k].mean())
    return float(np.mean(values))


def test_aurc_without_ties_is_the_mean_risk_of_the_k_most_confident():
    conf, correct = [0.9, 0.8, 0.6, 0.3, 0.1], [1, 0, 1, 1, 0]
    # risks at k = 1..5: 0, 1/2, 1/3, 1/4, 2/5
    assert aurc(conf, correct) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5)
    assert aurc(conf, correct) == pytest.approx(_direct_aurc(conf, correct))


@pytest.mark.parametrize(
    "conf, correct",
    [
        ([0.7, 0.7, 0.7, 0.2, 0.2, 0.9], [1, 0, 0, 1, 0, 1]),
        ([0.5] * 6, [1, 0, 0, 1, 0, 0]),
        ([0.4, 0.4, 0.9, 0.9, 0.1, 0.4], [0, 1, 1, 0, 0, 1]),
    ],
)
def test_aurc_and_accuracy_with_ties_match_every_tie_order_averaged(conf, correct):
    assert aurc(conf, correct) == pytest.approx(_direct_aurc(conf, correct))
    n = len(conf)
    for k in range(1, n + 1):
        assert accuracy_at_coverage(conf, correct, k / n) == pytest.approx(_direct_accuracy(conf, correct, k))


def test_a_constant_confidence_gains_nothing_from_abstaining():
    correct = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert aurc([0.3] * 10, correct) == pytest.approx(0.8)
    assert accuracy_at_coverage([0.3] * 10, correct, 0.5) == pytest.approx(0.2)
    assert risk_coverage([0.3] * 10, correct, [0.5, 1.0]) == pytest.approx([0.8, 0.8])


def test_bootstrap_weights_equal_repeating_the_items():
    rng = np.random.default_rng(3)
    conf = np.round(rng.uniform(size=12), 1)
    correct = (rng.uniform(size=12) < conf).astype(float)
    counts = rng.integers(0, 3, size=(4, 12)).astype(float)
    got = aurc(conf, correct, weights=counts)
    acc = accuracy_at_coverage(conf, correct, 0.5, weights=counts)
    for row in range(4):
        reps = counts[row].astype(int)
        expanded_c, expanded_y = np.repeat(conf, reps), np.repeat(correct, reps)
        assert got[row] == pytest.approx(aurc(expanded_c, expanded_y))
        assert acc[row] == pytest.approx(accuracy_at_coverage(expanded_c, expanded_y, 0.5))


def test_selective_metrics_are_undefined_without_items():
    assert aurc([], []) is None
    assert accuracy_at_coverage([], [], 0.8) is None
    with pytest.raises(ValueError):
        accuracy_at_coverage([0.5], [1], 0.0)


def test_collapse_counts_distinct_values_top_share_and_entropy():
    out = collapse([0.1] * 9 + [0.5])
    assert out == {
        "n_distinct": 2,
        "top_share": 0.9,
        "entropy": pytest.approx(-(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))),
        "collapsed": True,
    }
    varied = collapse([0.1, 0.2, 0.3, 0.4])
    assert varied["n_distinct"] == 4 and varied["entropy"] == pytest.approx(2.0) and not varied["collapsed"]
    assert collapse([0.3] * 5)["entropy"] == 0.0
    assert collapse([])["collapsed"] is None


def _binomial_abs_deviation(n: int, p: float) -> float:
    """E|X/n - p| for X ~ Binomial(n, p): the calibrated model's ECE when every item states p (one bin)."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) * abs(k / n - p) for k in range(n + 1))


def test_noise_floor_matches_the_binomial_closed_form_when_every_item_states_one_value():
    n, p = 24, 0.3
    draws = ece_floor_draws([p] * n, draws=40000, seed=1)
    assert draws.mean() == pytest.approx(_binomial_abs_deviation(n, p), abs=0.003)
    # the median of |X/n - p|: the smallest value whose cumulative probability reaches 1/2
    support = sorted({abs(k / n - p) for k in range(n + 1)})
    pmf = {
        d: sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1) if abs(k / n - p) == d)
        for d in support
    }
    cdf = np.cumsum([pmf[d] for d in support])
    assert np.median(draws) == pytest.approx(support[int(np.searchsorted(cdf, 0.5))])
    floor = ece_floor([p] * n)
    assert floor["ece_floor_range"][0] <= floor["ece_floor"] <= floor["ece_floor_range"][1]


def test_noise_floor_is_zero_for_certain_confidences_and_falls_with_n():
    assert ece_floor([0.0, 1.0, 1.0])["ece_floor"] == 0.0
    small = ece_floor([0.5] * 10)["ece_floor"]
    large = ece_floor([0.5] * 1000)["ece_floor"]
    assert large < small
    assert ece_floor([])["ece_floor"] is None
