"""The `grpo` objective's rewards: small named functions of one reply, after RLCR (Damani et al., 2025).

Each takes the model's reply text and what its prompt was built from, parses the reply with the Task's own parser
(the template's format) and grades the answer with the project's rule grader (`tasks.parsing.matches`). A reply
the parser cannot read gets 0 (under guided generation every reply is readable, so 0 is never reached there).
"""

from __future__ import annotations

from collections.abc import Sequence

from metaconf.data.schema import Question
from metaconf.tasks.task import PairwiseTask, SingleTask

UNREADABLE_REWARD = 0.0


def brier_reward(correct: bool, confidence: float) -> float:
    """RLCR's reward: c - (p - c)^2, with c = 1 for a correct answer (else 0) and p the stated confidence in [0, 1].

    Correctness dominates (a right answer always beats a wrong one: right rewards lie in [0, 1], wrong ones in
    [-1, 0]); within each, the Brier term is a proper scoring rule, so the expected reward is highest when p is the
    model's true probability of being right.
    """
    c = 1.0 if correct else 0.0
    return c - (float(confidence) - c) ** 2


def single_reward(reply: str, question: Question, task: SingleTask) -> float:
    """Single-question reward: c - (p - c)^2 (`brier_reward`) for the reply's answer graded against `question`'s
    gold answer and its stated confidence p; 0 when the answer or the confidence cannot be read."""
    parsed = task.parse(reply, question)
    if not parsed.parsed or parsed.confidence is None:
        return UNREADABLE_REWARD
    return brier_reward(parsed.correct, parsed.confidence)


def pairwise_reward(reply: str, questions: Sequence[Question], better: int, task: PairwiseTask) -> float:
    """Pairwise reward: 1 when the reply's choice is `better` (1 or 2: the question the model answers correctly more
    often in the targets stage's samples), else 0; 0 when the reply cannot be read (choice or an answer missing)."""
    q1, q2 = questions
    parsed = task.parse(reply, q1, q2)
    if not parsed.parsed:
        return UNREADABLE_REWARD
    return 1.0 if parsed.choice == better else 0.0
