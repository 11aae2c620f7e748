"""Sample each training question n times and measure how consistently the model gives its modal answer.

Modal answer: the most frequent extracted answer; a tie goes to the answer that appeared first in sample order
(deterministic, independent of hashing). Unparseable samples (no answer extracted) never become the modal
answer but still count in n, so they lower consistency: consistency = (samples giving the modal answer) / n.
With no parseable sample the modal answer is None, consistency 0 and modal_correct False.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from metaconf import grading
from metaconf.data.schema import Question
from metaconf.engines.base import Engine
from metaconf.records import ConsistencyRecord
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.task import AnswerTask, get_task

SAMPLED = Sampling(temperature=1.0)


def modal_answer(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """(modal answer, consistency) under the module's rule: ties to the earliest, unparseable count in n."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    best = max(counts.values())
    modal = next(a for a in answers if a is not None and counts[a] == best)
    return modal, best / len(answers)


def consistency_record(q: Question, samples: Sequence[str], task: AnswerTask | None = None) -> ConsistencyRecord:
    """Extract, vote and grade the samples of one question, read in `task`'s format (default: the bundled
    answer template)."""
    task = task or get_task("answer")
    answers = [task.parse(s, q) for s in samples]
    modal, consistency = modal_answer(answers)
    modal_text = None
    if modal is not None:
        first = next(s for s, a in zip(samples, answers) if a == modal)
        line = task.answer_text(first).split("\n", 1)[0].strip()
        modal_text = line if line and task.parse(line, q) == modal else modal
    try:
        correct = modal is not None and bool(grading.answer_matches(modal, q))
    except Exception:
        correct = False
    return ConsistencyRecord(
        id=q.id,
        dataset=q.dataset,
        domain=q.domain,
        answer_type=q.answer_type,
        samples=list(samples),
        answers=answers,
        modal_answer=modal,
        modal_text=modal_text,
        consistency=consistency,
        modal_correct=correct,
    )


def sampled_accuracy(record: ConsistencyRecord, q: Question) -> float:
    """The share of a question's samples whose answer is correct (unparseable ones count as wrong): the soft label
    of the brier objective, next to whether the modal answer is correct."""
    if not record.answers:
        return 0.0
    right = 0
    for answer in record.answers:
        try:
            right += answer is not None and bool(grading.answer_matches(answer, q))
        except Exception:
            continue
    return right / len(record.answers)


def better_question(accuracy1: float, accuracy2: float) -> int | None:
    """Which of two questions (1 or 2) the model answers correctly more often in its samples; None on a tie."""
    if accuracy1 == accuracy2:
        return None
    return 1 if accuracy1 > accuracy2 else 2


def sample_consistency(
    engine: Engine,
    questions: Sequence[Question],
    n: int = 10,
    sampling: Sampling = SAMPLED,
    task: AnswerTask | None = None,
) -> list[ConsistencyRecord]:
    """n answer-only samples per question (cached by the engine's store) -> one record per question.

    `task`: the answer format (default: the bundled answer template). Under `sampling.guided` each reply is
    constrained to that format, with the template's guided token limit unless `sampling.max_new_tokens` is given;
    free sampling is unchanged."""
    task = task or get_task("answer")
    limit = task.token_limit(sampling.guided, sampling.max_new_tokens)
    outputs = engine.generate(
        [task.messages(q) for q in questions],
        n=n,
        temperature=sampling.temperature,
        seed=sampling.seed,
        desc="consistency samples",
        guide=task.guides(list(questions), sampling.guided, limit),
        **task.generation(sampling.guided, limit),
    )
    return [consistency_record(q, [c.text for c in comps], task) for q, comps in zip(questions, outputs, strict=True)]
