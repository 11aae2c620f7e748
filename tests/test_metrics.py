"""metaconf.metrics against independent references and hand-computed values."""

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from metaconf.errors import DataError
from metaconf.metrics import (
    accuracy,
    adaptive_ece,
    auc_a,
    auc_c,
    auroc,
    brier,
    ece,
    overconfidence,
    pairwise_auc,
    parse_rate,
    smooth_bandwidth,
    smooth_ece,
)


def test_ece_hand_computed_with_end_points_inside_end_bins():
    conf = [0.0, 0.05, 0.15, 0.95, 1.0, 1.0]
    correct = [0, 1, 0, 1, 1, 0]
    # bin 0: {0.0, 0.05} acc .5 conf .025; bin 1: {0.15} acc 0; bin 9: {.95, 1, 1} acc 2/3 conf 2.95/3
    expected = (2 * abs(0.5 - 0.025) + 1 * 0.15 + 3 * abs(2 / 3 - 2.95 / 3)) / 6
    assert ece(conf, correct) == pytest.approx(expected)
    assert ece(conf, correct, n_bins=1) == pytest.approx(abs(np.mean(conf) - np.mean(correct)))


def test_ece_boundary_value_goes_to_upper_bin():
    # 0.5 sits in bin [0.5, 0.6): with 0.45 in the bin below the two gaps do not cancel
    assert ece([0.45, 0.5], [1, 0]) == pytest.approx((0.55 + 0.5) / 2)


def test_perfect_and_worst_calibration():
    assert ece([1.0, 1.0, 0.0], [1, 1, 0]) == 0.0
    assert ece([1.0, 0.0], [0, 1]) == 1.0
    assert brier([1.0, 0.0], [0, 1]) == 1.0
    assert brier([0.8, 0.8], [1, 0]) == pytest.approx((0.04 + 0.64) / 2)
    assert overconfidence([0.9, 0.9], [1, 0]) == pytest.approx(0.4)


def test_all_correct_all_wrong_single_item_and_empty():
    assert ece([0.7, 0.9], [1, 1]) == pytest.approx(0.2)
    assert ece([0.7, 0.9], [0, 0]) == pytest.approx(0.8)
    assert auroc([0.7, 0.9], [1, 1]) is None
    assert auroc([0.7, 0.9], [0, 0]) is None
    assert ece([0.3], [1]) == pytest.approx(0.7)
    assert adaptive_ece([0.3], [1]) == pytest.approx(0.7)
    for fn in (ece, adaptive_ece, brier, overconfidence, auroc, smooth_ece):
        assert fn([], []) is None
    assert accuracy([]) is None and parse_rate([]) is None


def test_adaptive_ece_equal_mass_bins():
    conf = [0.1, 0.2, 0.3, 0.4]
    correct = [1, 0, 0, 1]
    # two bins of two: {0.1, 0.2} acc .5 conf .15; {0.3, 0.4} acc .5 conf .35
    assert adaptive_ece(conf, correct, n_bins=2) == pytest.approx((2 * 0.35 + 2 * 0.15) / 4)


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        conf = rng.integers(0, 5, n) / 4  # many ties
        correct = rng.integers(0, 2, n)
        if len(set(correct)) < 2:
            continue
        assert auroc(conf, correct) == pytest.approx(roc_auc_score(correct, conf))


def test_auroc_ties_count_half_and_weights_act_as_copies():
    assert auroc([0.5, 0.5], [1, 0]) == 0.5
    conf, correct = np.array([0.2, 0.6, 0.6, 0.9]), np.array([0, 1, 0, 1])
    w = np.array([2, 1, 0, 3])
    copies = np.repeat(np.arange(4), w)
    assert auroc(conf, correct, weights=w) == pytest.approx(roc_auc_score(correct[copies], conf[copies]))


def test_two_dimensional_weights_give_one_value_per_row():
    conf, correct = np.array([0.1, 0.4, 0.8, 0.9]), np.array([0, 1, 1, 0])
    w = np.array([[1, 1, 1, 1], [2, 0, 1, 1], [0, 0, 4, 0]], dtype=float)
    for fn in (ece, adaptive_ece, brier, overconfidence, auroc):
        rows = fn(conf, correct, weights=w)
        assert rows.shape == (3,)
        for r in range(3):
            copies = np.repeat(np.arange(4), w[r].astype(int))
            expected = fn(conf[copies], correct[copies])
            assert (np.isnan(rows[r]) and expected is None) or rows[r] == pytest.approx(expected)


def test_bad_input_is_one_clear_error():
    with pytest.raises(DataError, match="confidence: value 1.5 at index 1"):
        ece([0.2, 1.5], [1, 0])
    with pytest.raises(DataError, match="correct: value 2"):
        brier([0.2, 0.5], [1, 2])
    with pytest.raises(DataError, match="differ in length"):
        ece([0.2], [1, 0])
    with pytest.raises(DataError, match="confidence"):
        ece([None, 0.2], [1, 0])


# -------------------------------------------------------------------------------------------------- smooth ECE
def brute_smooth_ece(conf, correct, sigma):
    """Direct numerical integral of |(1/n) sum_i K(t, c_i) (y_i - c_i)| with 21 reflections per side."""
    c, r = np.asarray(conf, float), np.asarray(correct, float) - np.asarray(conf, float)
    k = np.arange(-10, 11)[:, None]

    def integrand(t):
        kern = norm.pdf(t - c[None, :] - 2 * k, scale=sigma) + norm.pdf(t + c[None, :] - 2 * k, scale=sigma)
        return abs((kern.sum(axis=0) * r).mean())

    return quad(integrand, 0, 1, limit=400, points=sorted(set(c))[:40])[0]


@pytest.mark.parametrize("sigma", [0.03, 0.1, 0.4])
def test_smooth_ece_matches_brute_force(sigma):
    rng = np.random.default_rng(3)
    conf = rng.uniform(size=40)
    correct = (rng.uniform(size=40) < 0.5).astype(float)  # over- and under-confident regions: |.| matters
    assert smooth_ece(conf, correct, sigma) == pytest.approx(brute_smooth_ece(conf, correct, sigma), abs=2e-4)


def test_smooth_ece_default_bandwidth_is_the_fixed_point():
    rng = np.random.default_rng(4)
    conf = rng.uniform(size=50)
    correct = (rng.uniform(size=50) < conf**2).astype(float)
    sigma = smooth_bandwidth(conf, correct)
    value = smooth_ece(conf, correct)
    assert value == pytest.approx(sigma, abs=1e-5)
    assert brute_smooth_ece(conf, correct, sigma) == pytest.approx(sigma, abs=2e-4)


def test_smooth_ece_extremes():
    assert smooth_ece([0.0, 1.0, 1.0], [0, 1, 1]) < 1e-3  # perfectly calibrated
    assert smooth_ece([0.3] * 10, [0] * 10) == pytest.approx(0.3, abs=1e-4)  # one-sided gap: the mean gap
    assert smooth_ece([1.0], [0]) == pytest.approx(1.0, abs=1e-4)


def test_reflected_kernel_integrates_to_one():
    from metaconf.metrics.calibration import reflected_gaussian_kernel

    t = np.linspace(0, 1, 4001)
    for f in (0.0, 0.02, 0.5, 1.0):
        for sigma in (0.05, 0.5, 1.0):
            assert np.trapezoid(reflected_gaussian_kernel(t, np.array([f]), sigma)[:, 0], t) == pytest.approx(
                1.0, abs=1e-4
            )


# --------------------------------------------------------------------------------------------------- pairwise
def test_auc_c_leaves_out_equal_consistency():
    choice = [1, 2, 1, 2]
    c1 = [0.9, 0.9, 0.3, 0.5]
    c2 = [0.2, 0.2, 0.8, 0.5]  # last pair tied: left out
    assert auc_c(choice, c1, c2) == pytest.approx(1 / 3)  # agree, disagree, disagree
    assert auc_c([1], [0.5], [0.5]) is None


def test_auc_a_counts_mixed_outcome_pairs_only():
    choice = [1, 2, 1, 1]
    y1 = [1, 1, 0, 1]
    y2 = [0, 0, 1, 1]  # last pair: both right -> left out
    assert auc_a(choice, y1, y2) == pytest.approx(1 / 3)
    assert auc_a([1, 2], [1, 0], [1, 0]) is None
    with pytest.raises(DataError, match="choice"):
        auc_a([3], [1], [0])


def test_pairwise_auc_is_roc_auc_of_p_first():
    p = [0.9, 0.2, 0.6, 0.6, 0.1]
    first = [1, 0, 1, 0, 0]
    assert pairwise_auc(p, first) == pytest.approx(roc_auc_score(first, p))
    assert pairwise_auc([0.3], [1]) is None


def test_accuracy_and_parse_rate():
    assert accuracy([True, False, True, True]) == 0.75
    assert parse_rate([1, 0]) == 0.5
    assert math.isnan(accuracy([1, 0], weights=np.zeros((1, 2)))[0])


# ---------------------------------------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

items = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.35, 0.5, 0.9, 1.0]), st.booleans(), st.integers(0, 3)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(items)
def test_weights_equal_repeated_items_and_values_stay_in_range(rows):
    conf = np.array([r[0] for r in rows])
    correct = np.array([float(r[1]) for r in rows])
    w = np.array([r[2] for r in rows], dtype=float)
    copies = np.repeat(np.arange(len(rows)), w.astype(int))
    for fn in (ece, brier, overconfidence, auroc):
        weighted = fn(conf, correct, weights=w)
        repeated = fn(conf[copies], correct[copies])
        assert (weighted is None and repeated is None) or weighted == pytest.approx(repeated)
    value = ece(conf, correct)
    assert 0 <= value <= 1 and 0 <= adaptive_ece(conf, correct) <= 1 and 0 <= brier(conf, correct) <= 1


def test_smooth_ece_agrees_with_relplot_and_is_closer_to_the_exact_integral():
    """relplot (the method authors' package) discretises the kernel on a grid, picks the bandwidth by 10 steps of
    bisection and reports smECE at the bisection's upper end, not at the fixed point. metaconf integrates the
    kernel at the items themselves and finds the fixed point to 1e-7: the two agree to within relplot's grid
    error, and metaconf is the one that matches the exact integral (scipy quadrature)."""
    relplot = pytest.importorskip("relplot")
    rng = np.random.default_rng(7)
    for n in (40, 120):
        conf = rng.beta(4, 2, size=n)
        correct = (rng.uniform(size=n) < conf**1.5).astype(float)
        assert smooth_ece(conf, correct) == pytest.approx(relplot.smECE(conf, correct), abs=0.01)
        exact = brute_smooth_ece(conf, correct, 0.05)
        ours, theirs = smooth_ece(conf, correct, 0.05), relplot.smECE_sigma(conf, correct, 0.05)
        assert abs(ours - exact) < 1e-4 and abs(ours - exact) < abs(theirs - exact)
        value, width = relplot.smECE(conf, correct, return_width=True)
        sigma = smooth_bandwidth(conf, correct)  # the paper's fixed point: smECE at sigma* equals sigma*
        assert abs(brute_smooth_ece(conf, correct, sigma) - sigma) < abs(brute_smooth_ece(conf, correct, width) - width)
