"""Bootstrap intervals: coverage on a simulated case, determinism, the weighted and the looped path agree,
paired differences have the right sign."""

import numpy as np
import pytest

from metaconf.metrics import accuracy, auroc, bootstrap_ci, ece, paired_bootstrap


def test_coverage_of_accuracy_interval_is_near_nominal():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 200
    for t in range(trials):
        correct = (rng.uniform(size=80) < 0.7).astype(float)
        low, high = bootstrap_ci(accuracy, [correct], n_boot=400, seed=t)
        hits += low <= 0.7 <= high
    assert 0.88 <= hits / trials <= 0.99


def test_same_seed_same_interval_other_seed_differs():
    rng = np.random.default_rng(1)
    conf, correct = rng.uniform(size=50), (rng.uniform(size=50) < 0.5).astype(float)
    a = bootstrap_ci(ece, [conf, correct], n_boot=300, seed=7)
    assert a == bootstrap_ci(ece, [conf, correct], n_boot=300, seed=7)
    assert a != bootstrap_ci(ece, [conf, correct], n_boot=300, seed=8)
    assert a[0] <= ece(conf, correct) <= a[1]


def test_weighted_path_equals_per_resample_loop():
    rng = np.random.default_rng(2)
    conf, correct = rng.uniform(size=30), (rng.uniform(size=30) < 0.5).astype(float)

    def looped(c, y):  # no `weights` argument: called once per resample
        return auroc(c, y)

    assert bootstrap_ci(auroc, [conf, correct], n_boot=200, seed=3) == pytest.approx(
        bootstrap_ci(looped, [conf, correct], n_boot=200, seed=3)
    )
    named = bootstrap_ci(
        lambda confidence, correct, weights=None: ece(confidence, correct, weights=weights),
        {"confidence": conf, "correct": correct},
        n_boot=200,
        seed=3,
    )
    assert named == pytest.approx(bootstrap_ci(ece, [conf, correct], n_boot=200, seed=3))


def test_empty_and_undefined():
    assert bootstrap_ci(accuracy, [np.array([])]) is None
    assert bootstrap_ci(auroc, [np.array([0.2, 0.9]), np.array([1.0, 1.0])], n_boot=50) is None
    assert bootstrap_ci(accuracy, [np.array([1.0])], n_boot=50) == [1.0, 1.0]


def test_paired_bootstrap_sign_interval_and_p_value():
    rng = np.random.default_rng(4)
    ids = [f"q{i}" for i in range(60)]
    correct = (rng.uniform(size=60) < 0.5).astype(float)
    base = {i: (0.95, y) for i, y in zip(ids, correct)}  # overconfident
    better = {i: (0.5, y) for i, y in zip(ids, correct)}  # matched to the accuracy
    result = paired_bootstrap(base, better, ece, n_boot=500, seed=0)
    assert result["n"] == 60
    assert result["diff"] == pytest.approx(result["value"] - result["base"])
    assert result["diff"] < 0 and result["ci"][1] < 0 and result["p_value"] < 0.01
    reverse = paired_bootstrap(better, base, ece, n_boot=500, seed=0)
    assert reverse["diff"] > 0 and reverse["ci"][0] > 0


def test_paired_bootstrap_no_change_has_large_p_and_interval_around_zero():
    rng = np.random.default_rng(5)
    items = {f"q{i}": (float(rng.uniform()), float(rng.uniform() < 0.5)) for i in range(40)}
    same = paired_bootstrap(items, dict(items), ece, n_boot=300, seed=1)
    assert same["diff"] == 0 and same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0


def test_paired_bootstrap_matches_by_id_only():
    base = {"a": (1.0,), "b": (0.0,), "c": (1.0,)}
    cond = {"b": (1.0,), "c": (1.0,), "d": (0.0,)}
    result = paired_bootstrap(base, cond, accuracy, n_boot=100, seed=0)
    assert result["n"] == 2 and result["base"] == 0.5 and result["value"] == 1.0
    assert paired_bootstrap({"a": (1.0,)}, {"z": (1.0,)}, accuracy)["diff"] is None
