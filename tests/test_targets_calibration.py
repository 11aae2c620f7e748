"""Consistency (modal answer, ties, unparseable samples) and the calibration map on constructed samples."""

from __future__ import annotations

import pytest

from helpers.questions import num
from metaconf.errors import DataError
from metaconf.targets import CalibrationMap, ConsistencyRecord, bin_index, consistency_record, modal_answer


def record(qid: str, consistency: float, correct: bool, domain: str = "general") -> ConsistencyRecord:
    return ConsistencyRecord(
        id=qid,
        dataset="d",
        domain=domain,
        answer_type="mc",
        samples=[],
        answers=[],
        modal_answer="A",
        modal_text="A",
        consistency=consistency,
        modal_correct=correct,
    )


def test_modal_answer_counts_unparseable_samples_in_n():
    assert modal_answer(["B", "B", None, "C", None]) == ("B", 0.4)
    assert modal_answer([None, None]) == (None, 0.0)
    assert modal_answer([]) == (None, 0.0)


def test_modal_answer_tie_goes_to_the_earliest():
    assert modal_answer(["C", "B", "B", "C"]) == ("C", 0.5)
    assert modal_answer(["B", "C", "C", "B"]) == ("B", 0.5)


def test_consistency_record_from_known_samples():
    q = num("42", question="6*7?")
    r = consistency_record(q, ["Answer: 42", "Answer: 42", "Answer: 41", "no idea at all", "Answer: 42"])
    assert (r.modal_answer, r.consistency, r.modal_correct) == ("42", 0.6, True)
    assert r.answers[2] == "41" and r.parse_rate == pytest.approx(0.8)
    wrong = consistency_record(q, ["Answer: 7", "Answer: 7", "Answer: 42"])
    assert (wrong.modal_answer, wrong.modal_correct) == ("7", False)


def test_bin_index_edges():
    assert [bin_index(c, 10) for c in (0.0, 0.1, 0.3, 0.7, 0.99, 1.0)] == [0, 1, 3, 7, 9, 9]
    assert bin_index(3 / 10, 10) == 3 and bin_index(6 / 10, 10) == 6


def test_fit_gives_empirical_accuracy_per_bin():
    records = [record(f"q{i}", 0.95, i < 8) for i in range(10)] + [record(f"r{i}", 0.25, i < 2) for i in range(10)]
    cmap = CalibrationMap.fit(records, n_bins=10, min_bin_count=5)
    assert cmap.pooled_accuracy == pytest.approx(0.5)
    assert cmap.pooled.target[9] == pytest.approx(0.8)
    assert cmap.pooled.target[2] == pytest.approx(0.2)
    assert cmap.pooled.target[5] == pytest.approx(0.5)  # empty bin -> pooled accuracy
    assert cmap.accuracy(records[0]) == pytest.approx(0.8)


def test_sparse_bin_shrinks_toward_pooled_accuracy():
    records = [record(f"q{i}", 0.15, False) for i in range(18)] + [record("a", 0.95, True), record("b", 0.95, True)]
    cmap = CalibrationMap.fit(records, min_bin_count=5)
    pooled = 2 / 20
    assert cmap.pooled.target[9] == pytest.approx((2 + 3 * pooled) / 5)
    assert CalibrationMap.fit(records, min_bin_count=0).pooled.target[9] == pytest.approx(1.0)


def test_by_domain_maps_shrink_toward_the_pooled_bin():
    records = (
        [record(f"m{i}", 0.95, True, "math") for i in range(6)]
        + [record(f"t{i}", 0.95, False, "trivia") for i in range(2)]
        + [record(f"x{i}", 0.15, False, "trivia") for i in range(6)]
    )
    cmap = CalibrationMap.fit(records, by_domain=True, min_bin_count=4)
    assert cmap.by_domain["math"].target[9] == pytest.approx(1.0)
    pooled_bin = cmap.pooled.target[9]
    assert pooled_bin == pytest.approx(6 / 8)
    assert cmap.by_domain["trivia"].target[9] == pytest.approx((0 + 2 * pooled_bin) / 4)
    assert cmap.accuracy(records[6]) == pytest.approx(cmap.by_domain["trivia"].target[9])


def test_targets_are_noisy_clipped_and_seeded():
    records = [record(f"q{i}", 0.95, True) for i in range(50)] + [record(f"z{i}", 0.05, False) for i in range(50)]
    cmap = CalibrationMap.fit(records)
    highs = [cmap.target(r, noise=0.05, seed=1) for r in records[:50]]
    lows = [cmap.target(r, noise=0.05, seed=1) for r in records[50:]]
    assert all(0.95 <= t <= 1.0 for t in highs) and any(t < 1.0 for t in highs) and 1.0 in highs
    assert all(0.0 <= t <= 0.05 for t in lows) and 0.0 in lows
    assert highs == [cmap.target(r, noise=0.05, seed=1) for r in records[:50]]
    assert highs != [cmap.target(r, noise=0.05, seed=2) for r in records[:50]]
    assert cmap.target(records[0], noise=0.0) == 1.0


def test_json_round_trip_and_table():
    records = [record(f"q{i}", i / 10, i % 2 == 0, "math" if i < 5 else "trivia") for i in range(11)]
    cmap = CalibrationMap.fit(records, by_domain=True)
    again = CalibrationMap.from_json(cmap.to_json())
    assert again == cmap
    rows = cmap.table()
    assert [r["bin"] for r in rows] == list(range(10))
    assert rows[9]["range"] == "[0.90, 1.00]" and rows[9]["count"] == 2
    assert "| 9 | [0.90, 1.00] | 2 |" in cmap.markdown()
    with pytest.raises(DataError, match="calibration_map.json"):
        CalibrationMap.from_json("{}", "calibration_map.json")


def test_fit_refuses_no_records():
    with pytest.raises(DataError, match="no consistency records"):
        CalibrationMap.fit([])
