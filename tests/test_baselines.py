"""Confidence baselines: each method against a hand computation on constructed data (scripted engine), the
teacher gap and paired differences, the stage inside a study (resumable), and the report section."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize

from helpers.questions import mc
from helpers.study import SMALL, CountingStudy, ScriptedStudy
from metaconf.baselines import BASELINES, apply_map, fit_map, load_baselines, run_baselines
from metaconf.baselines.scores import agreement, answer_token_probability, yes_probability
from metaconf.baselines.summary import baseline_metrics
from metaconf.data import Question
from metaconf.engines import Completion
from metaconf.engines.scripted import ScriptedEngine
from metaconf.engines.types import TokenLogprob
from metaconf.io import write_jsonl
from metaconf.records import ConsistencyRecord
from metaconf.study.config import parse_config


def question(i: int, gold: str = "A", dataset: str = "toy") -> Question:
    return mc(
        gold, ["one", "two", "three", "four"], id=f"{dataset}/{i}", dataset=dataset, question=f"Question number {i}?"
    )


def test_answer_token_probability_reads_only_the_answer_span():
    lps = [
        TokenLogprob("Answer", -0.1),
        TokenLogprob(":", -0.2),
        TokenLogprob(" Par", -0.3),
        TokenLogprob("is", -0.4),
        TokenLogprob("\n", -2.0),
        TokenLogprob("x", -5.0),
    ]
    assert answer_token_probability(lps, "Answer: Paris\nx") == pytest.approx(math.exp(-0.7))
    assert answer_token_probability([TokenLogprob("B", -0.5)], "B") == pytest.approx(math.exp(-0.5))
    assert answer_token_probability(None, "Answer: B") is None
    assert answer_token_probability([TokenLogprob("Answer:", -0.1)], "Answer:") is None  # no answer written


def test_yes_probability_renormalises_yes_and_no_variants():
    top = {"yes": math.log(0.5), " Yes": math.log(0.1), "no": math.log(0.2), "maybe": math.log(0.15)}
    assert yes_probability([TokenLogprob("yes", math.log(0.5), top)]) == pytest.approx(0.6 / 0.8)
    assert yes_probability([TokenLogprob("No", math.log(0.9), {})]) == 0.0
    assert yes_probability([TokenLogprob("maybe", -0.1, {"perhaps": -2.0})]) is None
    assert yes_probability(None) is None


def test_agreement_counts_unparseable_samples_in_n():
    assert agreement("B", ["B", "A", None, "B"]) == 0.5
    assert agreement(None, ["B"]) == 0.0


def test_isotonic_map_is_the_pool_adjacent_violators_fit():
    x = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    y = [0, 0, 1, 0, 1, 1, 0, 1]
    iso = fit_map("isotonic", x, y)
    # by hand: (1, 0) at 0.4-0.5 pool to 0.5; (1, 1, 0) at 0.6-0.8 pool to 2/3; linear between, clipped outside
    assert [apply_map(iso, c) for c in (0.1, 0.45, 0.65, 0.95, 0.25)] == pytest.approx([0, 0.5, 2 / 3, 1, 0])
    assert apply_map(iso, None) is None


def test_platt_map_is_the_maximum_likelihood_logistic_fit():
    x = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1])
    platt = fit_map("platt", x, y)

    def nll(p):
        z = p[0] * x + p[1]
        return float(np.sum(np.logaddexp(0, z) - y * z))

    a, b = minimize(nll, [0.0, 0.0], method="BFGS").x
    assert platt["a"] == pytest.approx(a, abs=1e-3) and platt["b"] == pytest.approx(b, abs=1e-3)
    assert apply_map(platt, 0.55) == pytest.approx(1 / (1 + math.exp(-(a * 0.55 + b))), abs=1e-4)
    assert "error" in fit_map("platt", [0.2, 0.9], [1, 1])
    assert "error" in fit_map("isotonic", [0.5], [1])


P_YES = {0: 0.8, 1: 0.3, 2: 0.6, 3: 0.1}  # P(yes) of the P(True) reply per evaluation question (P(no) = 0.2)
GREEDY = {0: "A", 1: "A", 2: "B", 3: "B"}  # the greedy answers (gold is A: right, right, wrong, wrong)
TRAIN = [(20, "B"), (30, "B"), (40, "A"), (50, "B"), (60, "A"), (70, "A"), (80, "B"), (90, "A")]  # (stated %, gold)


def toy_model(messages, sample):
    text = messages[-1]["content"]
    number = int(text.split("Question number ")[1].split("?")[0])
    if "Is the proposed answer correct?" in text:
        top = {"yes": math.log(P_YES[number]), "no": math.log(0.2), "maybe": math.log(0.01)}
        return Completion("yes", logprobs=[TokenLogprob("yes", top["yes"], top)])
    if "onfidence" in text:  # single task on training questions: always "A", with a stated confidence
        return f"Answer: A\nConfidence: {TRAIN[number - 100][0]}%"
    letter = GREEDY[number]
    return Completion(
        f"Answer: {letter}",
        logprobs=[
            TokenLogprob("Answer", -0.05),
            TokenLogprob(":", -0.01),
            TokenLogprob(f" {letter}", -0.1 * (number + 1)),
        ],
    )


def test_every_baseline_on_constructed_data_matches_a_hand_computation(tmp_path):
    evals = [question(i) for i in range(4)]
    train = [question(100 + j, gold) for j, (_, gold) in enumerate(TRAIN)]
    samples = {0: ["A", "A", "A", "B"], 1: ["B", "B", "A", None], 2: ["B", "C", "C", "C"], 3: ["D", "B", None, None]}
    modal = {0: ("A", 0.75, True), 1: ("B", 0.5, False), 2: ("C", 0.75, False), 3: ("D", 0.25, False)}
    write_jsonl(
        tmp_path / "consistency" / "eval.jsonl",
        [
            {
                "id": q.id,
                "answers": samples[i],
                "modal_answer": modal[i][0],
                "consistency": modal[i][1],
                "modal_correct": modal[i][2],
            }
            for i, q in enumerate(evals)
        ],
    )
    # the constant predictor's rate: the training questions' modal answers, 3 of 8 right
    write_jsonl(
        tmp_path / "consistency" / "train.jsonl",
        [
            ConsistencyRecord(
                id=q.id,
                dataset=q.dataset,
                domain="general",
                answer_type="mc",
                samples=["A"],
                answers=["A"],
                modal_answer="A",
                modal_text="A",
                consistency=1.0,
                modal_correct=j < 3,
            ).to_row()
            for j, q in enumerate(train)
        ],
    )
    stated = {0: 0.1, 1: 0.45, 2: 0.65, 3: None}
    write_jsonl(
        tmp_path / "predictions" / "base__single__toy.jsonl",
        [
            {"id": q.id, "answer": "A", "confidence": stated[i], "correct": i != 2, "parsed": stated[i] is not None}
            for i, q in enumerate(evals)
        ],
    )
    engine = ScriptedEngine(toy_model, store=tmp_path / "completions.sqlite", quiet=True)
    run_baselines(tmp_path, engine, train, {"toy": evals}, BASELINES)
    got = {m: [(r.confidence, r.correct) for r in rows] for (m, _), rows in load_baselines(tmp_path).items()}

    assert got["consistency"] == [(0.75, True), (0.5, False), (0.75, False), (0.25, False)]
    assert got["consistency_greedy"] == [(0.75, True), (0.25, True), (0.25, False), (0.25, False)]
    assert [c for c, _ in got["token_probability"]] == pytest.approx([math.exp(-0.1 * (i + 1)) for i in range(4)])
    assert [c for c, _ in got["p_true"]] == pytest.approx([P_YES[i] / (P_YES[i] + 0.2) for i in range(4)])
    assert [y for _, y in got["p_true"]] == [True, True, False, False]
    # recalibration fitted on the training answers only (stated 20..90%, right where gold is A), as in the
    # isotonic test above; a missing stated confidence stays missing
    assert [c for c, _ in got["isotonic"]] == pytest.approx([0, 0.5, 2 / 3, None])
    assert [y for _, y in got["isotonic"]] == [True, True, False, True]
    assert got["platt"][3][0] is None and 0 < got["platt"][1][0] < 1
    assert got["constant"] == [
        (3 / len(train), True),
        (3 / len(train), False),
        (3 / len(train), False),
        (3 / len(train), False),
    ]
    recal = json.loads((tmp_path / "baselines" / "recalibration.json").read_text())
    assert recal["n_with_confidence"] == 8 and "x" in recal["maps"]["base"]["isotonic"]

    calls = len(engine.calls)  # a rerun reads every method back: nothing generated, nothing rewritten
    assert run_baselines(tmp_path, engine, train, {"toy": evals}, BASELINES).endswith("already stored")
    assert len(engine.calls) == calls


def _items(conf, correct, dataset="toy"):
    return [
        {"id": f"{dataset}/{i}", "dataset": dataset, "confidence": c, "correct": bool(y), "parsed": c is not None}
        for i, (c, y) in enumerate(zip(conf, correct))
    ]


def test_teacher_gap_and_paired_differences_by_hand():
    correct = [1, 1, 0, 0]
    baselines = {
        ("consistency", "toy"): _items([0.9, 0.8, 0.3, 0.2], correct),  # AUROC 1, ECE 0.2
        ("consistency", "flat"): _items([0.5, 0.5, 0.5, 0.5], correct, "flat"),
    }  # AUROC 0.5
    predictions = {
        ("single", "single", "toy"): _items([0.7, 0.4, 0.5, 0.3], correct),  # AUROC 0.75, ECE 0.425
        ("single", "single", "flat"): _items([0.7, 0.4, 0.5, 0.3], correct, "flat"),
    }
    info = {"toy": {"domain": "general", "in_domain": True}, "flat": {"domain": "general", "in_domain": False}}
    out = baseline_metrics(predictions, baselines, info, ["single"], n_boot=200, seed=0)
    gaps = {g["dataset"]: g for g in out["baselines"]["teacher_gap"]}
    assert gaps["toy"]["teacher_auroc"] == 1.0 and gaps["toy"]["condition_auroc"] == 0.75
    assert gaps["toy"]["recovered"] == pytest.approx(0.5)
    assert gaps["flat"]["recovered"] is None and "not above chance" in gaps["flat"]["undefined"]
    ece = next(c for c in out["baselines"]["comparisons"] if c["dataset"] == "toy" and c["metric"] == "ece")
    assert ece["method_value"] == pytest.approx(0.2) and ece["value"] == pytest.approx(0.425)
    assert ece["diff"] == pytest.approx(0.225)  # condition minus method
    rows = {(r["method"], r["dataset"]): r for r in out["baselines"]["rows"]}
    assert rows[("consistency", "toy")]["auroc"] == 1.0 and rows[("consistency", "toy")]["n_scored"] == 4
    meta = {r["dataset"]: r for r in out["metacognition"]["rows"]}
    # type-2 AUROC on the condition's confidence ratings (bins at 0.25 / 0.5 / 0.75): 3, 2 right; 3, 2 wrong
    assert set(meta) == {"toy", "flat"} and meta["toy"]["type2_auroc"] == pytest.approx(0.5)


def test_config_lists_baselines_all_on_by_default():
    assert parse_config(SMALL).baselines == list(BASELINES)
    assert parse_config({**SMALL, "baselines": []}).baselines == []
    from metaconf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"field 'baselines\.0'"):
        parse_config({**SMALL, "baselines": ["telepathy"]})


def test_study_scores_baselines_reports_them_and_resumes(tmp_path):
    config = parse_config({**SMALL, "conditions": ["base"]})
    run_dir = tmp_path / "run"
    study = ScriptedStudy(config, run_dir, quiet=True)
    study.run(("data", "targets", "consistency", "evaluate", "baselines", "metrics", "report"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    methods = {(r["method"], r["dataset"]) for r in metrics["baselines"]["rows"]}
    assert methods == {
        (m, d)
        for m in ("consistency", "consistency_greedy", "token_probability", "p_true", "isotonic", "platt", "constant")
        for d in ("mmlu_pro", "gsm8k", "truthfulqa")
    }
    constant = [r for r in metrics["baselines"]["rows"] if r["method"] == "constant"]
    assert all(r["auroc"] is None and "constant" in r["undefined"]["auroc"] for r in constant)
    assert all(r["profile"]["n_distinct"] == 1 and r["profile"]["collapsed"] for r in constant)
    assert not any(c["method"] == "constant" and c["metric"] == "auroc" for c in metrics["baselines"]["comparisons"])
    assert {(r["condition"], r["dataset"]) for r in metrics["metacognition"]["rows"]} == {
        ("base", d) for d in ("mmlu_pro", "gsm8k", "truthfulqa")
    }
    report = (run_dir / "report.md").read_text()
    assert "Methods on gsm8k" in report and "meta-d′" in report
    assert "G. Controls" in report and "constant" in report and (run_dir / "plots" / "risk_coverage.png").is_file()
    curves = {(c.get("condition") or c["method"], c["dataset"]) for c in metrics["selective"]["curves"]}
    assert ("base", "gsm8k") in curves and ("constant", "gsm8k") in curves
    assert all(r["aurc"] is not None and r["aurc_ci"] for r in metrics["rows"] if r["task"] == "single")
    assert (run_dir / "plots" / "baselines_auroc.png").is_file()
    assert "p_true" in json.loads((run_dir / "templates.json").read_text())
    stored = study.store.count()
    rerun = CountingStudy(config, run_dir, quiet=True)
    rerun.run(("baselines", "metrics"))
    assert study.store.count() == stored and rerun.engines and rerun.generated() == 0
