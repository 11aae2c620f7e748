"""The metric registry is the one list: metrics.json keys, labels, directions and report columns all come from it."""

from __future__ import annotations

import numpy as np
import pytest

from metaconf.conditions import CONDITIONS, PAPER_COLORS
from metaconf.metrics import registry, summarize
from metaconf.metrics.registry import METRICS, better, columns, headline_metrics, label, task_metrics
from metaconf.report.findings import reading, verdict
from metaconf.report.render import _results


def _predictions():
    rng = np.random.default_rng(0)
    single = [
        {"id": f"d/{i}", "dataset": "d", "confidence": float(c), "correct": bool(y), "parsed": True}
        for i, (c, y) in enumerate(zip(rng.uniform(size=20), rng.uniform(size=20) < 0.5))
    ]
    pairs = [
        {
            "id1": f"d/{i}",
            "id2": f"d/{i + 10}",
            "dataset": "d",
            "choice": 1 + i % 2,
            "correct1": i % 3 == 0,
            "correct2": i % 2 == 0,
            "consistency1": 0.1 * i,
            "consistency2": 0.5,
            "p_first": 0.6,
            "parsed": True,
        }
        for i in range(10)
    ]
    return {("base", "single", "d"): single, ("base", "pairwise", "d"): pairs}


def test_metrics_json_rows_hold_exactly_the_registry_metrics_in_its_order():
    out = summarize(_predictions(), {"d": {"domain": "x", "in_domain": True}}, n_boot=20)
    for row in out["rows"]:
        names = [k for k in row if f"{k}_ci" in row]
        assert names == list(task_metrics(row["task"]))
        assert all(row[name] is not None for name in names)


def test_every_metric_is_described_once_per_task():
    assert len({(m.task, m.name) for m in METRICS}) == len(METRICS)
    assert {m.task for m in METRICS} == set(registry.TASK_NAMES)
    assert all(m.better in (None, "lower", "higher") and m.label for m in METRICS)
    for name in {m.name for m in METRICS}:  # a name in both tasks reads the same in both
        assert len({(m.label, m.better, m.chance) for m in METRICS if m.name == name}) == 1
    assert columns("single") == ("accuracy", "ece", "auroc", "brier", "smooth_ece", "adaptive_ece", "overconfidence")
    assert columns("pairwise") == ("accuracy", "auc_c", "auc_a", "pairwise_auc")
    assert headline_metrics() == (("single", "ece"), ("single", "auroc"), ("pairwise", "auc_c"), ("pairwise", "auc_a"))
    assert label("no_such_metric") == "no_such_metric" and better("no_such_metric") is None


@pytest.mark.parametrize("metric", [m.name for m in METRICS if m.better])
def test_findings_read_a_change_in_the_registry_direction(metric):
    down = {"metric": metric, "diff": -0.1, "diff_ci": [-0.2, -0.05]}
    expected = "improved" if better(metric) == "lower" else "worsened"
    assert verdict(down) == expected
    assert reading(-0.1, [-0.2, -0.05], metric, "better") == ("for" if expected == "improved" else "against")


def test_results_table_headers_are_registry_labels():
    row = {"task": "pairwise", "condition": "base", "dataset": "d", "domain": "x", "n": 3, "parse_rate": 1.0}
    table = _results([row], "pairwise", columns("pairwise"))
    assert table.headers[5:] == ["accuracy", "AUC_c", "AUC_a", "pairwise AUC"]


def test_condition_colours_are_keyed_by_the_named_conditions():
    assert tuple(PAPER_COLORS) == CONDITIONS
