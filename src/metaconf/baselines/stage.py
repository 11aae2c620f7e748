"""The baselines stage: confidence methods that need no fine-tuning, scored on the same evaluation questions as
the conditions, one file per (method, dataset) in RUN/baselines/ (rows like single-task predictions).

Methods (docs/baselines.md): `consistency` (the teacher: the base model's modal-answer share, for the modal answer)
and `consistency_greedy` (the share agreeing with the greedy answer), `token_probability` (P of the greedy answer's
tokens), `p_true` (Kadavath et al. 2022), `isotonic` and `platt` (the base model's stated confidence recalibrated
on the training questions), `constant` (the training questions' accuracy of the modal answers, stated on every
question: the base rate, with no per-question signal). Everything generated goes through the engine's store, so a
rerun generates nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from metaconf.baselines.recalibration import METHODS as RECALIBRATIONS
from metaconf.baselines.recalibration import apply_map, fit_map
from metaconf.baselines.scores import agreement, answer_token_probability, yes_probability
from metaconf.data import Question
from metaconf.engines import Engine
from metaconf.errors import DataError
from metaconf.evaluation.stage import GREEDY, evaluate_single, prediction_path
from metaconf.io import read_jsonl, write_json, write_jsonl
from metaconf.metrics.controls import CONSTANT
from metaconf.names import inside
from metaconf.records import BaselinePrediction, read_baseline_predictions, read_consistency, read_recalibration
from metaconf.tasks.parsing import matches
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.task import AnswerTask, PTrueTask, Tasks, get_task

# config name -> the methods (score files) it produces
GROUPS: dict[str, tuple[str, ...]] = {
    "consistency": ("consistency", "consistency_greedy"),
    "token_probability": ("token_probability",),
    "p_true": ("p_true",),
    "recalibration": RECALIBRATIONS,
    "constant": ("constant",),
}
BASELINES = tuple(GROUPS)
TEACHER = "consistency"
# method -> metric -> why the metric is null for it (a constant confidence ranks nothing)
UNDEFINED: dict[str, dict[str, str]] = {
    CONSTANT: {"auroc": "undefined: a constant confidence ranks no answer above another"}
}
P_TRUE_TOP = 20  # top log-probabilities read at the first P(True) reply token


def methods_of(baselines: Sequence[str]) -> list[str]:
    return [m for name in baselines for m in GROUPS[name]]


def baseline_path(run_dir: Path, method: str, dataset: str) -> Path:
    return inside(run_dir, "baselines", f"{method}__{dataset}.jsonl")


def load_baselines(run_dir: Path) -> dict[tuple[str, str], list[BaselinePrediction]]:
    """Every baseline file of a run, keyed by (method, dataset), read through its typed record."""
    order = methods_of(BASELINES)
    found = {}
    for path in sorted((Path(run_dir) / "baselines").glob("*__*.jsonl")):
        method, dataset = path.stem.split("__")
        found[(method, dataset)] = read_baseline_predictions(path)
    return dict(
        sorted(found.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else len(order), kv[0][1]))
    )


def _row(q: Question, method: str, answer: str | None, confidence: float | None, correct: bool) -> dict[str, Any]:
    return BaselinePrediction(
        id=q.id,
        dataset=q.dataset,
        domain=q.domain,
        method=method,
        answer=answer,
        confidence=confidence,
        correct=correct,
        parsed=confidence is not None,
    ).to_row()


def greedy_answers(
    engine: Engine, questions: list[Question], seed: int = 0, guided: bool = False, task: AnswerTask | None = None
) -> list[Any]:
    """The base model's greedy answer-only completion per question, with the chosen tokens' log-probabilities
    (under `guided`, of the masked, renormalised distribution: the format's fixed tokens have probability 1)."""
    task = task or get_task("answer")
    outputs = engine.generate(
        [task.messages(q) for q in questions],
        n=1,
        temperature=0.0,
        seed=seed,
        logprobs=0,
        desc="baselines: greedy answers",
        guide=task.guides(questions, guided),
        **task.generation(guided),
    )
    return [comps[0] for comps in outputs]


def p_true_scores(
    engine: Engine, questions: list[Question], proposals: list[str], seed: int = 0, task: PTrueTask | None = None
) -> list[float | None]:
    """P(True) per question for its proposed answer: one greedy token, its top log-probabilities."""
    task = task or get_task("p_true")
    keep = [i for i, p in enumerate(proposals) if p.strip()]
    outputs = (
        engine.generate(
            [task.messages(questions[i], proposed=proposals[i]) for i in keep],
            n=1,
            temperature=0.0,
            seed=seed,
            logprobs=P_TRUE_TOP,
            desc="baselines: P(True)",
            **task.generation(),
        )
        if keep
        else []
    )
    scores: list[float | None] = [None] * len(questions)
    for i, comps in zip(keep, outputs):
        scores[i] = yes_probability(comps[0].logprobs)
    return scores


@dataclass
class Greedy:
    """The base model's greedy answers: completion, extracted answer, answer text and grade per question."""

    completions: list[Any]
    answers: list[str | None]
    proposals: list[str]
    grades: list[bool]


@dataclass
class Inputs:
    """What the methods score from, each part computed (or read) the first time a method asks for it."""

    run_dir: Path
    engine: Engine
    train_questions: list[Question]
    eval_sets: dict[str, list[Question]]
    sampling: Sampling
    tasks: Tasks

    @cached_property
    def questions(self) -> list[Question]:
        return [q for qs in self.eval_sets.values() for q in qs]

    @cached_property
    def consistency(self) -> dict[str, dict[str, Any]]:
        """The base model's consistency record of every evaluation question (the consistency stage's)."""
        path = self.run_dir / "consistency" / "eval.jsonl"
        records = {r["id"]: r for r in read_jsonl(path, missing_ok=True)}
        missing = [q.id for q in self.questions if q.id not in records]
        if missing:
            raise DataError(f"{path}: no consistency record for {missing[0]} (run the consistency stage first)")
        return records

    @cached_property
    def greedy(self) -> Greedy:
        qs, task, grader = self.questions, self.tasks.answer, self.sampling.grader
        completions = greedy_answers(self.engine, qs, self.sampling.seed, self.sampling.guided, task)
        answers = [task.parse(c.text, q) for c, q in zip(completions, qs)]
        proposals = [task.answer_text(c.text) for c in completions]
        grades = grader.grade(proposals, qs) if grader is not None else [matches(a, q) for a, q in zip(answers, qs)]
        return Greedy(completions, answers, proposals, [bool(g) for g in grades])

    @cached_property
    def recalibration(self) -> dict[str, Any]:
        path = self.run_dir / "baselines" / "recalibration.json"
        if path.is_file():
            return read_recalibration(path)
        return fit_recalibration(self)


def fit_recalibration(inputs: Inputs) -> dict[str, Any]:
    """The base model's stated confidence on the training questions (single task, the evaluation's settings, so
    stored answers are reused) -> isotonic and Platt maps, stored in RUN/baselines/recalibration.json."""
    rows = evaluate_single(inputs.engine, "base", inputs.train_questions, inputs.sampling, inputs.tasks.single)
    run_dir = inputs.run_dir
    write_jsonl(run_dir / "baselines" / "base_single_train.jsonl", rows)
    scored = [r for r in rows if r["confidence"] is not None]
    x, y = [r["confidence"] for r in scored], [float(r["correct"]) for r in scored]
    maps = {"base": {m: fit_map(m, x, y) for m in RECALIBRATIONS}}
    write_json(
        run_dir / "baselines" / "recalibration.json",
        {
            "fitted_on": "the base model's stated confidence on the training questions (single task)",
            "n_train": len(rows),
            "n_with_confidence": len(scored),
            "maps": maps,
        },
    )
    return maps


Row = dict[str, Any]


def _greedy_rows(inputs: Inputs, method: str, confidences: Sequence[float | None]) -> list[Row]:
    g = inputs.greedy
    return [
        _row(q, method, answer, conf, correct)
        for q, answer, conf, correct in zip(inputs.questions, g.answers, confidences, g.grades)
    ]


def score_consistency(inputs: Inputs) -> list[Row]:
    """The teacher: the share of the base model's samples giving the modal answer, for the modal answer."""
    records = inputs.consistency
    return [
        _row(q, "consistency", r["modal_answer"], float(r["consistency"]), bool(r["modal_correct"]))
        for q in inputs.questions
        for r in [records[q.id]]
    ]


def training_base_rate(run_dir: Path) -> tuple[float, int]:
    """The accuracy of the base model's modal answers on the training questions (RUN/consistency/train.jsonl, the
    targets stage's records) and their number."""
    path = Path(run_dir) / "consistency" / "train.jsonl"
    records = read_consistency(path) if path.is_file() else []
    if not records:
        raise DataError(f"{path}: missing or empty; the constant predictor needs it (run the targets stage first)")
    return sum(r.modal_correct for r in records) / len(records), len(records)


def score_constant(inputs: Inputs) -> list[Row]:
    """The constant predictor: the teacher's answers (the modal answers), each stated with the training set's
    accuracy of the modal answers: the base rate a model could learn without any per-question signal."""
    rate, _ = training_base_rate(inputs.run_dir)
    records = inputs.consistency
    return [
        _row(q, CONSTANT, r["modal_answer"], rate, bool(r["modal_correct"]))
        for q in inputs.questions
        for r in [records[q.id]]
    ]


def score_consistency_greedy(inputs: Inputs) -> list[Row]:
    """The share of the samples agreeing with the greedy answer."""
    records = inputs.consistency
    confs = [agreement(a, records[q.id]["answers"]) for q, a in zip(inputs.questions, inputs.greedy.answers)]
    return _greedy_rows(inputs, "consistency_greedy", confs)


def score_token_probability(inputs: Inputs) -> list[Row]:
    """P of the greedy answer's tokens."""
    label = inputs.tasks.answer.parser.labels["answer"].find
    confs = [answer_token_probability(c.logprobs, c.text, label) for c in inputs.greedy.completions]
    return _greedy_rows(inputs, "token_probability", confs)


def score_p_true(inputs: Inputs) -> list[Row]:
    """P("yes") when the base model is asked whether its greedy answer is correct."""
    g, s = inputs.greedy, inputs.sampling
    return _greedy_rows(
        inputs, "p_true", p_true_scores(inputs.engine, inputs.questions, g.proposals, s.seed, inputs.tasks.p_true)
    )


def recalibrated(method: str) -> Callable[[Inputs], list[Row]]:
    """The base condition's stated confidence on each evaluation question, mapped through the fitted `method`."""

    def score(inputs: Inputs) -> list[Row]:
        maps, rows = inputs.recalibration, []
        for dataset, qs in inputs.eval_sets.items():
            stored = prediction_path(inputs.run_dir, "base", "single", dataset)
            if not stored.is_file():
                raise DataError(f"{stored}: missing; recalibration needs the base model's evaluated answers")
            base = {r["id"]: r for r in read_jsonl(stored)}
            for q in qs:
                stated = base[q.id]
                conf = apply_map(maps["base"][method], stated["confidence"])
                rows.append(_row(q, method, stated["answer"], conf, bool(stated["correct"])))
        return rows

    return score


# method -> how it scores every evaluation question (in GROUPS order: stored inputs are shared between methods)
SCORERS: dict[str, Callable[[Inputs], list[Row]]] = {
    "consistency": score_consistency,
    "consistency_greedy": score_consistency_greedy,
    "token_probability": score_token_probability,
    "p_true": score_p_true,
    **{m: recalibrated(m) for m in RECALIBRATIONS},
    CONSTANT: score_constant,
}


def run_baselines(
    run_dir: Path,
    engine: Engine,
    train_questions: list[Question],
    eval_sets: dict[str, list[Question]],
    baselines: Sequence[str],
    sampling: Sampling = GREEDY,
    tasks: Tasks | None = None,
) -> str:
    """Score every wanted method on every evaluation dataset; returns a one-line summary. `sampling`: the
    evaluation's settings, so the base model states its confidence the same way on training questions and answers
    are graded as the conditions' are; `tasks`: the study's reply formats (default: the bundled templates)."""
    run_dir = Path(run_dir)
    methods = methods_of(baselines)
    todo = [m for m in methods if not all(baseline_path(run_dir, m, d).is_file() for d in eval_sets)]
    if not todo:
        return f"{len(methods)} methods already stored"
    inputs = Inputs(run_dir, engine, train_questions, eval_sets, sampling, tasks or Tasks.of())
    if {"consistency", "consistency_greedy", CONSTANT} & set(todo):
        inputs.consistency  # noqa: B018 -- a missing record is an error before anything is generated
    rows = {m: SCORERS[m](inputs) for m in todo}
    for method, method_rows in rows.items():
        for dataset in eval_sets:
            write_jsonl(baseline_path(run_dir, method, dataset), [r for r in method_rows if r["dataset"] == dataset])
    return f"{len(todo)} methods scored on {len(inputs.questions)} evaluation questions ({', '.join(todo)})"
