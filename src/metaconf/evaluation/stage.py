"""The evaluation stage: one condition's answers to the single and pairwise tasks, as per-item predictions.

Every prompt goes through the engine (and so its completion store), is parsed and graded; the rows land in
`RUN/predictions/<condition>__<task>__<dataset>.jsonl` (formats in docs/architecture.md) for the metrics and
for anyone who wants to re-analyse.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from metaconf.data import Question
from metaconf.engines import Engine
from metaconf.io import write_jsonl
from metaconf.names import inside
from metaconf.records import PairPrediction, Prediction, SinglePrediction, read_run_predictions
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.task import PairwiseTask, SingleTask, Tasks, get_task

# Top log-probabilities asked for in a guided single reply: enough to see every allowed token at a confidence digit
# (ten digits and '%'), so the probability-weighted confidence misses no mass.
CONFIDENCE_LOGPROBS = 11

Pair = tuple[Question, Question]
GREEDY = Sampling()
GREEDY_WITH_LOGPROBS = Sampling(logprobs=5)  # the pairwise task's default: P(choice) needs them


def make_pairs(questions: list[Question], n_pairs: int, seed: int = 0) -> list[Pair]:
    """`n_pairs` distinct pairs of distinct questions, each question in about the same number of pairs.

    Questions are shuffled (seeded) into a cycle and neighbours paired, then the next-but-one neighbours, and so
    on; the position of each question in its pair alternates so neither slot is favoured.
    """
    if len(questions) < 2:
        return []
    order = sorted(questions, key=lambda q: q.id)
    random.Random(f"pairs:{seed}").shuffle(order)
    pairs: list[Pair] = []
    seen: set[frozenset[str]] = set()
    k = len(order)
    for offset in range(1, k):
        for i in range(k):
            q1, q2 = order[i], order[(i + offset) % k]
            key = frozenset((q1.id, q2.id))
            if key in seen:
                continue
            seen.add(key)
            pairs.append((q1, q2) if len(pairs) % 2 == 0 else (q2, q1))
            if len(pairs) == n_pairs:
                return pairs
    return pairs


def prediction_path(run_dir: Path, condition: str, task: str, dataset: str) -> Path:
    return inside(run_dir, "predictions", f"{condition}__{task}__{dataset}.jsonl")


def _generate(engine: Engine, task: Any, items: list, sampling: Sampling, logprobs: int | None, desc: str) -> list:
    """One greedy (or `sampling.temperature`) reply per item, in the task's format."""
    return engine.generate(
        [task.messages(*(i if isinstance(i, tuple) else (i,))) for i in items],
        n=1,
        temperature=sampling.temperature,
        seed=sampling.seed,
        desc=desc,
        guide=task.guides(items, sampling.guided),
        logprobs=logprobs,
        **task.generation(sampling.guided, sampling.max_new_tokens),
    )


def evaluate_single(
    engine: Engine,
    condition: str,
    questions: list[Question],
    sampling: Sampling = GREEDY,
    task: SingleTask | None = None,
) -> list[dict[str, Any]]:
    """Answer + confidence for each question; one prediction row each, asked and read in `task`'s format
    (default: the bundled single template).

    Under `sampling.guided` replies are constrained to the template's format; with `sampling.logprobs` the row
    also gets `confidence_expected`, the confidence weighted by the model's (masked, renormalised) probabilities of
    the allowed confidence values. Free sampling asks for no log-probabilities. `sampling.grader` grades the
    answers instead of the rules (e.g. a JudgeGrader; docs/grading.md)."""
    task = task or get_task("single")
    want_logprobs = max(sampling.logprobs, CONFIDENCE_LOGPROBS) if sampling.guided and sampling.logprobs else None
    outputs = _generate(engine, task, questions, sampling, want_logprobs, f"{condition}: single")
    rows = []
    for q, (completion,) in zip(questions, outputs, strict=True):
        parsed = task.parse(completion.text, q)
        row = SinglePrediction(
            id=q.id,
            dataset=q.dataset,
            domain=q.domain,
            condition=condition,
            task="single",
            raw=completion.text,
            answer=parsed.answer,
            confidence=parsed.confidence,
            correct=parsed.correct,
            parsed=parsed.parsed,
        )
        if want_logprobs:
            row.confidence_expected = task.expected_confidence(completion.logprobs)
        rows.append(row.to_row())
    if sampling.grader is not None:
        texts = [task.answer_text(completion.text) for (completion,) in outputs]
        for row, correct in zip(rows, sampling.grader.grade(texts, questions), strict=True):
            row["correct"] = bool(correct)
    return rows


def evaluate_pairwise(
    engine: Engine,
    condition: str,
    pairs: list[Pair],
    consistency: dict[str, float],
    sampling: Sampling = GREEDY_WITH_LOGPROBS,
    task: PairwiseTask | None = None,
) -> list[dict[str, Any]]:
    """The choice between two questions, then both answers; one prediction row per pair, in `task`'s format.

    `p_first` is P(choice = 1) renormalised over '1' and '2'; under guidance these are the only tokens the mask
    allows there, so it is the model's exact probability of choosing question 1 given the format.
    `sampling.grader`: grades both answers instead of the rules (a missing answer line stays wrong)."""
    task = task or get_task("pairwise")
    outputs = _generate(engine, task, pairs, sampling, sampling.logprobs or None, f"{condition}: pairwise")
    rows = []
    for (q1, q2), (completion,) in zip(pairs, outputs, strict=True):
        parsed = task.parse(completion.text, q1, q2, logprobs=completion.logprobs)
        row = PairPrediction(
            id1=q1.id,
            id2=q2.id,
            dataset=q1.dataset,
            domain=q1.domain,
            condition=condition,
            task="pairwise",
            raw=completion.text,
            choice=parsed.choice,
            answer1=parsed.answer1,
            answer2=parsed.answer2,
            correct1=parsed.correct1,
            correct2=parsed.correct2,
            consistency1=consistency.get(q1.id),
            consistency2=consistency.get(q2.id),
            p_first=parsed.p_first,
            parsed=parsed.parsed,
        )
        rows.append(row.to_row())
    if sampling.grader is not None:
        texts = [task.answer_texts(completion.text) for (completion,) in outputs]
        grades = sampling.grader.grade([t or "" for pair in texts for t in pair], [q for pair in pairs for q in pair])
        for k, row in enumerate(rows):
            for j in (0, 1):
                row[f"correct{j + 1}"] = texts[k][j] is not None and bool(grades[2 * k + j])
    return rows


def evaluate_condition(
    run_dir: Path,
    engine: Engine,
    condition: str,
    questions: dict[str, list[Question]],
    pairs: dict[str, list[Pair]],
    consistency: dict[str, float],
    sampling: Sampling = GREEDY_WITH_LOGPROBS,
    tasks: Tasks | None = None,
) -> dict[tuple[str, str], Path]:
    """Both tasks on every dataset for one condition, in the study's formats (`tasks`; default: the bundled
    templates); writes and returns the prediction files.

    Each dataset goes to the engine on its own: its prompts share their template's instructions, which the
    engine prefills once per batch.
    """
    tasks = tasks or Tasks.of()
    written = {}
    for dataset, qs in questions.items():
        rows = {
            "single": evaluate_single(engine, condition, qs, sampling, tasks.single),
            "pairwise": evaluate_pairwise(
                engine, condition, pairs.get(dataset, []), consistency, sampling, tasks.pairwise
            ),
        }
        for task, task_rows in rows.items():
            written[(task, dataset)] = write_jsonl(prediction_path(run_dir, condition, task, dataset), task_rows)
    return written


def load_predictions(run_dir: Path) -> dict[tuple[str, str, str], list[Prediction]]:
    """Every prediction file of a run, keyed by (condition, task, dataset), read through its typed record (a file
    named otherwise, or a bad field, is an error naming the file, line and field)."""
    return read_run_predictions(run_dir)
