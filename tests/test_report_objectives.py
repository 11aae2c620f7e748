"""The "which objective" claim: each condition trained with another objective against the sft condition on the same
training set, found from the config (not from names), with the same verdict rule; contrasts keep objectives apart."""

from __future__ import annotations

from metaconf.conditions import objective_pairs
from metaconf.report.findings import finding_rows
from metaconf.study.config import parse_config

DATASETS = ("a", "b")
SETS = [{"name": "single", "task": "single"}, {"name": "multitask", "task": "multitask"}]
CONDITIONS = [
    "base",
    "single",
    "multitask",
    {"name": "mt_brier", "training_set": "multitask", "objective": "brier"},
    {"name": "s_grpo", "training_set": "single", "objective": "grpo"},
]


def _comparison(condition, reference, task, metric, diff, dataset):
    return {
        "condition": condition,
        "reference": reference,
        "task": task,
        "metric": metric,
        "dataset": dataset,
        "diff": diff,
        "diff_ci": [diff - 0.01, diff + 0.01],
    }


def _metrics() -> dict:
    config = {"targets": {"sets": SETS}, "conditions": CONDITIONS}
    rows = [
        {"condition": c, "task": t, "dataset": d, "in_domain": True}
        for c in ("base", "single", "multitask", "mt_brier", "s_grpo")
        for t in ("single", "pairwise")
        for d in DATASETS
    ]
    contrasts = [_comparison("mt_brier", "multitask", "single", "ece", -0.1, d) for d in DATASETS] + [
        _comparison("mt_brier", "multitask", "pairwise", "auc_c", 0.0, d) for d in DATASETS
    ]
    contrasts += [_comparison("s_grpo", "single", "single", "ece", 0.2, d) for d in DATASETS]
    return {"rows": rows, "comparisons": [], "contrasts": contrasts, "config": config}


def test_objective_pairs_and_contrasts_come_from_the_records():
    raw = {
        "data": {"train": [{"name": "mmlu_pro"}]},
        "targets": {"sets": SETS},
        "conditions": CONDITIONS,
    }
    config = parse_config(raw)
    assert objective_pairs(config.model_dump(mode="json")) == [("mt_brier", "multitask"), ("s_grpo", "single")]
    # multitask vs single compares one objective: the brier multitask condition is not set against sft single
    assert config.contrasts() == [("multitask", "single"), ("mt_brier", "multitask"), ("s_grpo", "single")]


def test_findings_say_which_objective_per_task_with_the_same_verdict_rule():
    by = {(r.claim.key, r.condition, r.task, r.metric): r for r in finding_rows(_metrics())}
    better = by[("objective", "mt_brier − multitask", "single", "ece")]
    assert better.verdict == "supported" and set(better.cells) == set(DATASETS)
    assert by[("objective", "mt_brier − multitask", "pairwise", "auc_c")].verdict == "no evidence"
    assert by[("objective", "s_grpo − single", "single", "ece")].verdict == "contradicted"
    assert not any(k[0] == "multitask" and "mt_brier" in k[1] for k in by)
