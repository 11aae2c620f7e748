"""The baselines stage: confidence methods that need no fine-tuning, scored on the same evaluation questions as
the conditions, one file per (method, dataset) in RUN/baselines/ (rows like single-task predictions).

Methods (docs/baselines.md): `consistency` (the teacher: the base model's modal-answer share, for the modal answer)
and `consistency_greedy` (the share agreeing with the greedy answer), `token_probability` (P of the greedy answer's
tokens), `p_true` (Kadavath et al. 2022), `isotonic` and `platt` (the base model's stated confidence recalibrated
on the training questions). Everything generated goes through the engine's store, so a rerun generates nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metaconf import grading
from metaconf.baselines.recalibration import METHODS as RECALIBRATIONS
from metaconf.baselines.recalibration import apply_map, fit_map
from metaconf.baselines.scores import (
    agreement,
    answer_token_probability,
    p_true_messages,
    yes_probability,
)
from metaconf.data import Question
from metaconf.engines import Engine
from metaconf.errors import DataError
from metaconf.evaluation.stage import evaluate_single, prediction_path
from metaconf.io import read_json, read_jsonl, write_json, write_jsonl
from metaconf.tasks import answer_part, load_template, parse_answer

# config name -> the methods (score files) it produces
GROUPS: dict[str, tuple[str, ...]] = {
    "consistency": ("consistency", "consistency_greedy"),
    "token_probability": ("token_probability",),
    "p_true": ("p_true",),
    "recalibration": RECALIBRATIONS,
}
BASELINES = tuple(GROUPS)
TEACHER = "consistency"
P_TRUE_TOP = 20  # top log-probabilities read at the first P(True) reply token


def methods_of(baselines: Sequence[str]) -> list[str]:
    return [m for name in baselines for m in GROUPS[name]]


def baseline_path(run_dir: Path, method: str, dataset: str) -> Path:
    return Path(run_dir) / "baselines" / f"{method}__{dataset}.jsonl"


def load_baselines(run_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every baseline file of a run, keyed by (method, dataset)."""
    order = methods_of(BASELINES)
    found = {}
    for path in sorted((Path(run_dir) / "baselines").glob("*__*.jsonl")):
        method, dataset = path.stem.split("__")
        found[(method, dataset)] = read_jsonl(path)
    return dict(
        sorted(found.items(), key=lambda kv: (order.index(kv[0][0]) if kv[0][0] in order else len(order), kv[0][1]))
    )


def _row(q: Question, method: str, answer: str | None, confidence: float | None, correct: bool) -> dict[str, Any]:
    return {
        "id": q.id,
        "dataset": q.dataset,
        "domain": q.domain,
        "method": method,
        "answer": answer,
        "confidence": confidence,
        "correct": bool(correct),
        "parsed": confidence is not None,
    }


def _correct(answer: str | None, q: Question) -> bool:
    if answer is None:
        return False
    try:
        return bool(grading.answer_matches(answer, q))
    except Exception:  # a grader failure on odd text counts as wrong, never a crash
        return False


def greedy_answers(engine: Engine, questions: list[Question], seed: int = 0, guided: bool = False) -> list[Any]:
    """The base model's greedy answer-only completion per question, with the chosen tokens' log-probabilities
    (under `guided`, of the masked, renormalised distribution: the format's fixed tokens have probability 1)."""
    t = load_template("answer")
    from metaconf.tasks import answer_messages
    from metaconf.tasks.guides import answer_guide

    outputs = engine.generate(
        [answer_messages(q, t) for q in questions],
        n=1,
        temperature=0.0,
        seed=seed,
        logprobs=0,
        desc="baselines: greedy answers",
        guide=[answer_guide(q, t) for q in questions] if guided else None,
        **t.generation(guided),
    )
    return [comps[0] for comps in outputs]


def p_true_scores(engine: Engine, questions: list[Question], proposals: list[str], seed: int = 0) -> list[float | None]:
    """P(True) per question for its proposed answer: one greedy token, its top log-probabilities."""
    t = load_template("p_true")
    keep = [i for i, p in enumerate(proposals) if p.strip()]
    outputs = (
        engine.generate(
            [p_true_messages(questions[i], proposals[i], t) for i in keep],
            n=1,
            temperature=0.0,
            seed=seed,
            logprobs=P_TRUE_TOP,
            desc="baselines: P(True)",
            **t.generation(),
        )
        if keep
        else []
    )
    scores: list[float | None] = [None] * len(questions)
    for i, comps in zip(keep, outputs):
        scores[i] = yes_probability(comps[0].logprobs)
    return scores


def fit_recalibration(
    run_dir: Path,
    engine: Engine,
    train_questions: list[Question],
    temperature: float = 0.0,
    seed: int = 0,
    guided: bool = False,
    logprobs: int = 0,
    grader: grading.Grader | None = None,
) -> dict[str, Any]:
    """The base model's stated confidence on the training questions (single task, the evaluation's settings, so
    stored answers are reused) -> isotonic and Platt maps, stored in RUN/baselines/recalibration.json."""
    rows = evaluate_single(engine, "base", train_questions, temperature, seed, guided, logprobs, grader)
    write_jsonl(Path(run_dir) / "baselines" / "base_single_train.jsonl", rows)
    scored = [r for r in rows if r["confidence"] is not None]
    x, y = [r["confidence"] for r in scored], [float(r["correct"]) for r in scored]
    maps = {"base": {m: fit_map(m, x, y) for m in RECALIBRATIONS}}
    write_json(
        Path(run_dir) / "baselines" / "recalibration.json",
        {
            "fitted_on": "the base model's stated confidence on the training questions (single task)",
            "n_train": len(rows),
            "n_with_confidence": len(scored),
            "maps": maps,
        },
    )
    return maps


def run_baselines(
    run_dir: Path,
    engine: Engine,
    train_questions: list[Question],
    eval_sets: dict[str, list[Question]],
    baselines: Sequence[str],
    temperature: float = 0.0,
    seed: int = 0,
    guided: bool = False,
    logprobs: int = 0,
    grader: grading.Grader | None = None,
) -> str:
    """Score every wanted method on every evaluation dataset; returns a one-line summary. `guided`, `logprobs`,
    `grader`: the evaluation's settings, so the base model states its confidence the same way on training
    questions and answers are graded as the conditions' are (None: by the rules)."""
    run_dir = Path(run_dir)
    methods = methods_of(baselines)
    todo = [m for m in methods if not all(baseline_path(run_dir, m, d).is_file() for d in eval_sets)]
    if not todo:
        return f"{len(methods)} methods already stored"
    questions = [q for qs in eval_sets.values() for q in qs]
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in todo}

    consistency = {r["id"]: r for r in read_jsonl(run_dir / "consistency" / "eval.jsonl", missing_ok=True)}
    if "consistency" in todo or "consistency_greedy" in todo:
        missing = [q.id for q in questions if q.id not in consistency]
        if missing:
            raise DataError(
                f"{run_dir / 'consistency' / 'eval.jsonl'}: no consistency record for {missing[0]} "
                "(run the consistency stage first)"
            )
    if {"consistency_greedy", "token_probability", "p_true"} & set(todo):
        greedy = greedy_answers(engine, questions, seed, guided)
        answers = [parse_answer(c.text, q) for c, q in zip(greedy, questions)]
        proposals = [answer_part(c.text) for c in greedy]
        p_true = p_true_scores(engine, questions, proposals, seed) if "p_true" in todo else [None] * len(questions)
        grades = (
            grader.grade(proposals, questions)
            if grader is not None
            else [_correct(answer, q) for answer, q in zip(answers, questions)]
        )
        for q, comp, answer, pt, correct in zip(questions, greedy, answers, p_true, grades):
            if "consistency_greedy" in todo:
                conf = agreement(answer, consistency[q.id]["answers"])
                rows["consistency_greedy"].append(_row(q, "consistency_greedy", answer, conf, correct))
            if "token_probability" in todo:
                conf = answer_token_probability(comp.logprobs, comp.text)
                rows["token_probability"].append(_row(q, "token_probability", answer, conf, correct))
            if "p_true" in todo:
                rows["p_true"].append(_row(q, "p_true", answer, pt, correct))
    if "consistency" in todo:
        for q in questions:
            record = consistency[q.id]
            rows["consistency"].append(
                _row(
                    q,
                    "consistency",
                    record["modal_answer"],
                    float(record["consistency"]),
                    bool(record["modal_correct"]),
                )
            )
    recal = [m for m in todo if m in RECALIBRATIONS]
    if recal:
        path = run_dir / "baselines" / "recalibration.json"
        maps = (
            read_json(path)["maps"]
            if path.is_file()
            else fit_recalibration(run_dir, engine, train_questions, temperature, seed, guided, logprobs, grader)
        )
        for dataset, qs in eval_sets.items():
            stored = prediction_path(run_dir, "base", "single", dataset)
            if not stored.is_file():
                raise DataError(f"{stored}: missing; recalibration needs the base model's evaluated answers")
            base = {r["id"]: r for r in read_jsonl(stored)}
            for q in qs:
                stated = base[q.id]
                for m in recal:
                    rows[m].append(
                        _row(
                            q,
                            m,
                            stated["answer"],
                            apply_map(maps["base"][m], stated["confidence"]),
                            bool(stated["correct"]),
                        )
                    )
    for method, method_rows in rows.items():
        for dataset in eval_sets:
            write_jsonl(baseline_path(run_dir, method, dataset), [r for r in method_rows if r["dataset"] == dataset])
    return f"{len(todo)} methods scored on {len(questions)} evaluation questions ({', '.join(todo)})"
