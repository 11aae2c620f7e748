"""summarize(): metrics.json rows, pooled rows, paired comparisons, parse-failure handling, bad input."""

import json

import numpy as np
import pytest

from metaconf.errors import DataError
from metaconf.metrics import ece, summarize, write_metrics

INFO = {"mmlu": {"domain": "general", "in_domain": True}, "medqa": {"domain": "medical", "in_domain": False}}


def single_rows(condition, dataset, confs, corrects, parsed=None):
    parsed = parsed or [True] * len(confs)
    return [
        {
            "id": f"{dataset}/{i}",
            "dataset": dataset,
            "domain": INFO[dataset]["domain"],
            "condition": condition,
            "task": "single",
            "raw": "x",
            "answer": "A",
            "confidence": c if p else None,
            "correct": y,
            "parsed": p,
        }
        for i, (c, y, p) in enumerate(zip(confs, corrects, parsed))
    ]


def pair_rows(condition, dataset, choices, y1, y2, c1, c2, p_first=None):
    p_first = p_first or [None] * len(choices)
    return [
        {
            "id1": f"{dataset}/{i}",
            "id2": f"{dataset}/{i + 50}",
            "dataset": dataset,
            "domain": "x",
            "condition": condition,
            "task": "pairwise",
            "raw": "1",
            "choice": ch,
            "answer1": "a",
            "answer2": "b",
            "correct1": a,
            "correct2": b,
            "consistency1": u,
            "consistency2": v,
            "p_first": p,
            "parsed": ch is not None,
        }
        for i, (ch, a, b, u, v, p) in enumerate(zip(choices, y1, y2, c1, c2, p_first))
    ]


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y = [bool(v) for v in rng.uniform(size=30) < 0.4]
    preds = {}
    for ds in INFO:
        preds[("base", "single", ds)] = single_rows("base", ds, [0.95] * 30, y, [True] * 28 + [False] * 2)
        preds[("single", "single", ds)] = single_rows("single", ds, [0.8 if v else 0.2 for v in y], y)
        n = 12
        preds[("base", "pairwise", ds)] = pair_rows(
            "base", ds, [1] * n, [True, False] * 6, [False, True] * 6, [0.9, 0.1] * 6, [0.2, 0.8] * 6, [0.6, 0.7] * 6
        )
        preds[("single", "pairwise", ds)] = pair_rows(
            "single",
            ds,
            [1, 2] * 5 + [None, None],
            [True, False] * 6,
            [False, True] * 6,
            [0.9, 0.1] * 6,
            [0.2, 0.8] * 6,
        )
    return preds, y


def test_rows_follow_the_metrics_json_schema(predictions):
    preds, y = predictions
    out = summarize(preds, INFO, n_boot=200, seed=0, model="tiny", config={"name": "t"})
    assert out["model"] == "tiny" and out["config"] == {"name": "t"}
    assert len(out["rows"]) == 8
    for row in out["rows"]:
        for key in ("condition", "task", "dataset", "domain", "in_domain", "n", "accuracy", "parse_rate"):
            assert key in row
        names = (
            ("ece", "brier", "auroc", "adaptive_ece", "smooth_ece", "overconfidence")
            if row["task"] == "single"
            else ("auc_c", "auc_a", "pairwise_auc")
        )
        for name in names:
            assert name in row and f"{name}_ci" in row
    json.dumps(out, allow_nan=False)  # never NaN


def test_parse_failures_leave_calibration_but_count_in_parse_rate(predictions):
    preds, y = predictions
    out = summarize(preds, INFO, n_boot=100)
    base = next(r for r in out["rows"] if (r["condition"], r["task"], r["dataset"]) == ("base", "single", "mmlu"))
    assert base["n"] == 30 and base["n_parsed"] == 28
    assert base["parse_rate"] == pytest.approx(28 / 30)
    assert base["accuracy"] == pytest.approx(np.mean(y))  # accuracy over every answer
    assert base["ece"] == pytest.approx(ece([0.95] * 28, y[:28]))
    assert base["auroc"] == 0.5  # one confidence for all: ties count half
    assert base["domain"] == "general" and base["in_domain"] is True
    lo, hi = base["ece_ci"]
    assert lo <= base["ece"] <= hi


def test_pairwise_metrics_and_null_when_undefined(predictions):
    preds, _ = predictions
    out = summarize(preds, INFO, n_boot=100)
    rows = {(r["condition"], r["task"], r["dataset"]): r for r in out["rows"]}
    base = rows[("base", "pairwise", "mmlu")]
    assert base["auc_c"] == 0.5 and base["auc_a"] == 0.5  # always picks question 1; half the pairs favour it
    assert base["pairwise_auc"] == 0.0  # p_first is higher where question 1 was wrong
    trained = rows[("single", "pairwise", "mmlu")]
    assert trained["parse_rate"] == pytest.approx(10 / 12)
    assert trained["auc_a"] == 1.0 and trained["auc_c"] == 1.0
    assert trained["pairwise_auc"] is None and trained["pairwise_auc_ci"] is None  # no log-probabilities


def test_pooled_rows_are_labelled_and_comparisons_are_paired(predictions):
    preds, _ = predictions
    out = summarize(preds, INFO, n_boot=200)
    pooled = {(r["condition"], r["task"], r["dataset"]): r for r in out["pooled"]}
    row = pooled[("single", "single", "pooled in-domain")]
    assert row["pooled"] is True and row["datasets"] == ["mmlu"] and row["n"] == 30
    assert ("base", "single", "pooled new-domain") in pooled
    comp = {(c["condition"], c["task"], c["dataset"], c["metric"]): c for c in out["comparisons"]}
    assert not any(c["condition"] == "base" for c in out["comparisons"])
    ece_change = comp[("single", "single", "mmlu", "ece")]
    assert ece_change["diff"] < 0 and ece_change["diff_ci"][1] < 0 and ece_change["p_value"] < 0.05
    assert ece_change["diff"] == pytest.approx(ece_change["value"] - ece_change["base"])
    assert comp[("single", "single", "mmlu", "accuracy")]["diff"] == 0  # same answers
    assert comp[("single", "single", "pooled in-domain", "ece")]["pooled"] is True


def test_contrasts_compare_multitask_with_each_single_task_condition(predictions):
    preds, y = predictions
    assert summarize(preds, INFO, n_boot=50)["contrasts"] == []  # no multitask condition
    for ds in INFO:
        preds[("multitask", "single", ds)] = single_rows("multitask", ds, [1.0 if v else 0.0 for v in y], y)
    out = summarize(preds, INFO, n_boot=200)
    contrasts = {(c["condition"], c["reference"], c["task"], c["dataset"], c["metric"]): c for c in out["contrasts"]}
    assert {key[:2] for key in contrasts} == {("multitask", "single")}  # no pairwise condition in this study
    ece_vs_single = contrasts[("multitask", "single", "single", "mmlu", "ece")]
    singles = {(c["condition"], c["dataset"], c["metric"]): c for c in out["comparisons"]}
    assert ece_vs_single["base"] == pytest.approx(singles[("single", "mmlu", "ece")]["value"])  # the reference
    assert ece_vs_single["value"] == 0.0  # stated 1 when right, 0 when wrong
    assert ece_vs_single["diff"] == pytest.approx(-0.2) and ece_vs_single["diff_ci"][1] < 0
    assert contrasts[("multitask", "single", "single", "pooled new-domain", "ece")]["pooled"] is True
    assert all(c["reference"] == "base" for c in out["comparisons"])
    assert ("multitask", "single", "single", "mmlu", "smooth_ece") not in contrasts  # headline metrics only


def test_deterministic_under_seed(predictions):
    preds, _ = predictions
    assert summarize(preds, INFO, n_boot=100, seed=3) == summarize(preds, INFO, n_boot=100, seed=3)


def test_bad_rows_name_the_file_row_and_field(predictions):
    preds, _ = predictions
    preds[("base", "single", "mmlu")][4]["confidence"] = 1.7
    with pytest.raises(DataError, match=r"base__single__mmlu: row 5: field 'confidence'"):
        summarize(preds, INFO, n_boot=10)
    preds[("base", "single", "mmlu")][4]["confidence"] = 0.5
    preds[("base", "pairwise", "mmlu")][0]["choice"] = "maybe"
    with pytest.raises(DataError, match="row 1: field 'choice'"):
        summarize(preds, INFO, n_boot=10)
    with pytest.raises(DataError, match="missing from the datasets info"):
        summarize({("base", "single", "other"): []}, INFO)


def test_write_metrics_is_atomic_json(tmp_path, predictions):
    preds, _ = predictions
    path = write_metrics(tmp_path / "run" / "metrics.json", summarize(preds, INFO, n_boot=20))
    assert json.loads(path.read_text())["rows"]
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]

    class Unwritable:
        def __str__(self) -> str:
            raise ValueError("cannot be written")

    with pytest.raises(ValueError):
        write_metrics(path, {"x": Unwritable()})
    assert json.loads(path.read_text())["rows"]  # the old file survives a failed write


def test_write_metrics_writes_strict_json_with_null_for_undefined(tmp_path):
    """NaN and infinities (Python's or numpy's) become null: metrics.json parses under strict JSON parsers."""
    path = write_metrics(
        tmp_path / "metrics.json",
        {
            "rows": [
                {
                    "ece": float("nan"),
                    "auroc": np.float64("inf"),
                    "n": np.int64(3),
                    "ok": np.bool_(True),
                    "ece_ci": (np.float32(0.25), -float("inf")),
                }
            ]
        },
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    row = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))["rows"][0]
    assert row == {"ece": None, "auroc": None, "n": 3, "ok": True, "ece_ci": [0.25, None]}


def test_unread_answer_with_read_confidence_counts_as_wrong_in_calibration():
    """Parse rate counts it as a failure, but calibration keeps it as a confident wrong answer."""
    from metaconf.metrics import ece, summarize

    rows = [
        {"id": "a", "dataset": "d", "confidence": 0.9, "correct": True, "parsed": True},
        {"id": "b", "dataset": "d", "confidence": 0.9, "correct": False, "parsed": False},  # answer unreadable
        {"id": "c", "dataset": "d", "confidence": None, "correct": False, "parsed": False},  # nothing readable
    ]
    out = summarize({("base", "single", "d"): rows}, {"d": {"domain": "x", "in_domain": True}}, n_boot=50)
    row = next(r for r in out["rows"] if r["dataset"] == "d")
    assert row["n"] == 3 and row["n_parsed"] == 1 and row["n_scored"] == 2
    assert row["parse_rate"] == pytest.approx(1 / 3)
    assert row["ece"] == pytest.approx(ece([0.9, 0.9], [1, 0]))
