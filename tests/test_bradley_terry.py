"""Bradley-Terry relative confidence: the penalised fit against choix, and the AUROC of the strengths."""

from __future__ import annotations

import choix  # the reference implementation (dev extra)
import numpy as np
import pytest

from metaconf.metrics.bradley_terry import comparisons_of, fit_bradley_terry, relative_row
from metaconf.records import PairPrediction


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_matches_choix_opt_pairwise(seed):
    rng = np.random.default_rng(seed)
    n = 12
    truth = rng.normal(size=n)
    data = []
    for _ in range(40):
        i, j = rng.choice(n, size=2, replace=False)
        data.append((i, j) if rng.uniform() < 1 / (1 + np.exp(truth[j] - truth[i])) else (j, i))
    ours = fit_bradley_terry(n, data, alpha=0.1)
    reference = choix.opt_pairwise(n, data, alpha=0.1, method="BFGS", tol=1e-10)
    assert ours == pytest.approx(reference, abs=1e-5)


def test_a_question_that_wins_every_comparison_stays_finite_and_on_top():
    strengths = fit_bradley_terry(3, [(0, 1), (0, 2), (1, 2)])
    assert np.all(np.isfinite(strengths)) and strengths[0] > strengths[1] > strengths[2]
    assert strengths.sum() == pytest.approx(0.0, abs=1e-6)  # the penalty centres a connected design
    with pytest.raises(ValueError):
        fit_bradley_terry(2, [(0, 1)], alpha=0.0)


def _pair(id1, id2, choice):
    return PairPrediction(id1=id1, id2=id2, dataset="d", choice=choice, correct1=False, correct2=False, parsed=True)


def test_relative_row_scores_strengths_against_the_grades():
    # a cycle of 4 questions; the model always prefers the questions it gets right (a and c)
    pairs = [_pair("a", "b", 1), _pair("c", "b", 1), _pair("c", "d", 1), _pair("d", "a", 2), _pair("a", "c", None)]
    ids, wins = comparisons_of(pairs)
    assert ids == ["a", "b", "c", "d"] and len(wins) == 4  # the unread choice adds nothing
    grades = {"a": True, "b": False, "c": True, "d": False}
    row = relative_row(pairs, grades, {"a": 0.2, "b": 0.2, "c": 0.2, "d": 0.2}, n_boot=200)
    assert row["auroc"] == 1.0 and row["n_questions"] == 4 and row["n_comparisons"] == 4
    assert row["stated_auroc"] == 0.5  # one stated value: no ranking
    assert row["auroc_ci"][1] == 1.0
    flipped = relative_row([_pair(p.id1, p.id2, p.choice and 3 - p.choice) for p in pairs], grades, {}, n_boot=0)
    assert flipped["auroc"] == 0.0 and flipped["stated_auroc"] is None


def test_pairs_per_question_gives_a_connected_design_and_pairs_per_dataset_still_wins():
    from helpers.questions import mc
    from metaconf.evaluation.stage import make_pairs
    from metaconf.study.config import EvaluationConfig

    questions = [mc("A", ["a", "b"], id=f"d/{i}", dataset="d") for i in range(10)]
    assert EvaluationConfig(pairs_per_question=4).n_pairs(10) == 20
    assert EvaluationConfig(pairs_per_question=3).n_pairs(9) == 14  # ceil(27 / 2)
    assert EvaluationConfig(pairs_per_question=4, pairs_per_dataset=7).n_pairs(10) == 7
    pairs = make_pairs(questions, EvaluationConfig(pairs_per_question=4).n_pairs(10), seed=0)
    degree = {q.id: 0 for q in questions}
    for q1, q2 in pairs:
        degree[q1.id] += 1
        degree[q2.id] += 1
    assert set(degree.values()) == {4} and len({frozenset((a.id, b.id)) for a, b in pairs}) == 20
    reached, frontier = {questions[0].id}, [questions[0].id]  # connected: every question reachable from one
    while frontier:
        here = frontier.pop()
        for q1, q2 in pairs:
            for a, b in ((q1.id, q2.id), (q2.id, q1.id)):
                if a == here and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    assert reached == set(degree)


def test_metrics_json_relative_section_and_report_table():
    from metaconf.metrics import summarize
    from metaconf.records import Metrics, validate
    from metaconf.report.controls import relative_table

    single = [
        {"id": q, "dataset": "d", "confidence": 0.5, "correct": q in "ac", "parsed": True} for q in ("a", "b", "c", "d")
    ]
    pairs = [p.to_row() for p in (_pair("a", "b", 1), _pair("c", "b", 1), _pair("c", "d", 1), _pair("d", "a", 2))]
    out = summarize(
        {("x", "single", "d"): single, ("x", "pairwise", "d"): pairs}, {"d": {"domain": "g", "in_domain": True}}, 100
    )
    validate(Metrics, out, "metrics.json")  # the typed section
    (row,) = out["relative"]["rows"]
    assert (row["condition"], row["auroc"], row["stated_auroc"]) == ("x", 1.0, 0.5)
    table = relative_table(out)
    assert table.rows[0][:4] == ["d", "x", "4 / 4", "1.000 (1.000, 1.000)"]
