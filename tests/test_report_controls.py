"""The findings' controls: collapsed AUROC cells and verdicts, ECE changes below the noise floor, the constant
predictor's rows and the shuffled-target contrast found from the config."""

from __future__ import annotations

from metaconf.conditions import shuffled_controls
from metaconf.report.findings import BELOW_FLOOR, COLLAPSED, finding_rows, row_verdict

DATASETS = ("a", "b")
CONFIG = {
    "targets": {
        "sets": [
            {"name": "single", "task": "single", "size": None, "single_share": 0.5, "domains": None},
            {
                "name": "mixed_up",
                "task": "single",
                "size": None,
                "single_share": 0.5,
                "domains": None,
                "shuffle_targets": True,
            },
        ]
    },
    "conditions": ["base", "single", {"name": "control", "training_set": "mixed_up"}],
}


def _profile(collapsed: bool, floor: float) -> dict:
    return {
        "n_distinct": 1 if collapsed else 5,
        "top_share": 1.0 if collapsed else 0.3,
        "entropy": 0.0,
        "collapsed": collapsed,
        "ece_floor": floor,
        "ece_floor_range": [0.0, 2 * floor],
    }


def _comparison(condition, metric, diff, reference="base", **more):
    return {
        "condition": condition,
        "reference": reference,
        "task": "single",
        "metric": metric,
        "diff": diff,
        "diff_ci": [diff - 0.01, diff + 0.01],
        **more,
    }


def _metrics() -> dict:
    rows = [
        {"condition": c, "task": "single", "dataset": d, "in_domain": True, "profile": _profile(c == "control", 0.05)}
        for c in ("base", "single", "control")
        for d in DATASETS
    ]
    comparisons = [
        _comparison(c, m, v, dataset=d)
        for c in ("single", "control")
        for d in DATASETS
        for m, v in (("ece", -0.03 if d == "a" else -0.3), ("auroc", 0.2))
    ]
    contrasts = [
        _comparison("single", m, v, "control", dataset=d) for d in DATASETS for m, v in (("ece", -0.2), ("auroc", 0.2))
    ]
    constant = [
        {"method": "constant", "condition": c, "dataset": d, "metric": "ece", "diff": -0.1, "diff_ci": [-0.2, -0.05]}
        for c in ("single", "control")
        for d in DATASETS
    ]
    return {
        "rows": rows,
        "comparisons": comparisons,
        "contrasts": contrasts,
        "config": CONFIG,
        "baselines": {"rows": [], "comparisons": constant},
    }


def test_shuffled_controls_come_from_the_sets_shuffle_flag_not_names():
    assert shuffled_controls(CONFIG) == [("single", "control")]
    unflagged = {**CONFIG, "targets": {"sets": [{**s, "shuffle_targets": False} for s in CONFIG["targets"]["sets"]]}}
    assert shuffled_controls(unflagged) == []


def test_findings_mark_collapse_the_noise_floor_the_control_and_the_constant_predictor():
    by = {(r.claim.key, r.condition, r.metric): r for r in finding_rows(_metrics())}
    control_auroc = by[("discrimination", "control", "auroc")]
    assert {c.reading for c in control_auroc.cells.values()} == {COLLAPSED} and control_auroc.verdict == COLLAPSED
    assert by[("discrimination", "single", "auroc")].verdict == "supported"
    ece = by[("calibration_in", "single", "ece")]
    assert ece.cells["a"].note == BELOW_FLOOR and ece.cells["b"].note == ""  # |−0.03| < 0.05 ≤ |−0.3|
    targets = by[("targets", "single − control", "ece")]
    assert targets.verdict == "supported" and set(targets.cells) == set(DATASETS)
    assert ("multitask", "single − control", "ece") not in by  # a shuffled control is not a multitask contrast
    assert by[("constant", "single − constant", "ece")].verdict == "supported"
    keys = list(dict.fromkeys(r.claim.key for r in finding_rows(_metrics())))
    assert keys == ["calibration_in", "calibration_new", "discrimination", "targets", "constant"]


def test_collapse_takes_precedence_and_never_votes():
    assert row_verdict([COLLAPSED, COLLAPSED, "against"])[0] == COLLAPSED
    assert row_verdict([COLLAPSED, "for", "for"])[0] == "supported"
    assert row_verdict(["undefined"]) == ("no evidence", "all undefined")


def test_a_study_with_a_shuffled_control_reports_it_against_its_twin(tmp_path):
    import json

    from helpers.study import SMALL, ScriptedStudy
    from metaconf.study.config import parse_config

    raw = {
        **SMALL,
        "targets": {
            **SMALL["targets"],
            "sets": [
                {"name": "single", "task": "single"},
                {"name": "single_shuffled", "task": "single", "shuffle_targets": True},
            ],
        },
        "conditions": ["base", "single", {"name": "single_shuffled", "training_set": "single_shuffled"}],
        "evaluation": {"pairs_per_question": 2, "consistency_samples": 4, "n_boot": 50},
        "baselines": ["consistency", "constant"],
    }
    config = parse_config(raw)
    run_dir = tmp_path / "run"
    ScriptedStudy(config, run_dir, quiet=True).run(
        ("data", "targets", "consistency", "evaluate", "baselines", "metrics", "report")
    )
    plain = [json.loads(line) for line in (run_dir / "training_sets" / "single" / "examples.jsonl").open()]
    shuffled = [json.loads(line) for line in (run_dir / "training_sets" / "single_shuffled" / "examples.jsonl").open()]
    assert [e["id"] for e in plain] == [e["id"] for e in shuffled]
    assert sorted(e["target"] for e in plain) == sorted(e["target"] for e in shuffled)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {(c["condition"], c["reference"]) for c in metrics["contrasts"]} == {("single", "single_shuffled")}
    assert metrics["rows"][0]["n"] == 6 and {r["n_comparisons"] for r in metrics["relative"]["rows"]} == {6}
    report = (run_dir / "report.md").read_text()
    findings = report[: report.index("## Figures")]
    assert "The gain comes from the targets" in findings and "single − single\\_shuffled" in findings
    assert "Calibration beats the constant predictor" in findings
