"""The one record type every dataset loads into."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnswerType = Literal["mc", "numeric", "open", "boolean"]
ANSWER_TYPES: tuple[str, ...] = ("mc", "numeric", "open", "boolean")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Question:
    """One benchmark question.

    `answers` holds the gold answer(s): for multiple choice the letter(s) ("B"), for numeric the number as a
    string ("1234"), for open-ended every accepted alias, for boolean "yes" / "no".
    `id` is stable across runs and machines: `<dataset>/<source id or content hash>`.
    """

    id: str
    dataset: str
    domain: str
    question: str
    choices: list[str] | None
    answers: list[str]
    answer_type: AnswerType
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Question:
        return cls(
            id=row["id"],
            dataset=row["dataset"],
            domain=row["domain"],
            question=row["question"],
            choices=list(row["choices"]) if row.get("choices") is not None else None,
            answers=list(row["answers"]),
            answer_type=row["answer_type"],
            meta=dict(row.get("meta") or {}),
        )

    def choice_letters(self) -> list[str]:
        """The option letters of a multiple-choice question (A, B, ...); empty for other types."""
        return list(LETTERS[: len(self.choices)]) if self.choices else []
