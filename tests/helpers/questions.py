"""Question factories for the tests, one per answer type: each has defaults (id "t/<type>", dataset "t", a
question text) that a test overrides by keyword only where they matter, so no test spells out a Question."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metaconf.data import Question

PARTICLES = ["electrons", "protons", "neutrons", "photons"]


def _question(
    answer_type: str, answers: list[str], choices: list[str] | None, defaults: dict[str, Any], fields: dict[str, Any]
) -> Question:
    values = {"id": f"t/{answer_type}", "dataset": "t", **defaults, **fields}
    return Question(choices=choices, answers=answers, answer_type=answer_type, **values)  # type: ignore[arg-type]


def mc(answer: str = "B", choices: Sequence[str] = PARTICLES, **fields: Any) -> Question:
    """A multiple-choice question; by default "which particle is positive?" over PARTICLES, gold B (protons)."""
    defaults = {"domain": "general", "question": "Which particle has a positive charge?"}
    return _question("mc", [answer], list(choices), defaults, fields)


def num(answer: str = "1234", **fields: Any) -> Question:
    """A numeric question with gold `answer`."""
    return _question("numeric", [answer], None, {"domain": "math", "question": "How much?"}, fields)


def open_q(*aliases: str, **fields: Any) -> Question:
    """An open-ended question whose gold answers are `aliases` (default: "Paris", for "Capital of France?")."""
    defaults = {"domain": "trivia", "question": "Capital of France?"}
    return _question("open", list(aliases or ["Paris"]), None, defaults, fields)


def boolean(answer: str = "yes", **fields: Any) -> Question:
    """A yes/no question with gold `answer`."""
    return _question("boolean", [answer], None, {"domain": "legal", "question": "Is it legal?"}, fields)
