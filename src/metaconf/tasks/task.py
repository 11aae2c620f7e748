"""One reply format as one object: a template's prompt, guide, parser and training-target writer, built once.

A `Task` is made from a template (tasks/templates/*.yaml or a user's file) and the kind of reply it asks for:
`answer` (answer only: the consistency samples and the baselines' greedy answers), `single` (answer and
confidence), `pairwise` (choice, then both answers) or `p_true` (a yes/no verdict on a proposed answer). Its
guide (tasks/guides.py) and its parser (tasks/parsing.py, `ReplyParser`) are both derived from the template's
`output`, so a custom template is asked, guided, parsed and trained in its own format. `Tasks` holds the four a
study uses, picked once from its `targets` settings.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, overload

from metaconf.data.schema import Question
from metaconf.engines.types import TokenLogprob
from metaconf.errors import ConfigError, DataError
from metaconf.grading.normalize import bounded_text
from metaconf.tasks import guides as _guides
from metaconf.tasks.parsing import (
    PairParse,
    ReplyParser,
    SingleParse,
    check_answer,
    choice_probability,
    expected_confidence,
    matches,
)
from metaconf.tasks.templates import Messages, Template, _messages, _render_single, format_choices, load_template


class Task:
    """One template, used for one kind of reply: `messages`, `guide`, `generation`, and in the subclasses
    `parse` and `format_target`."""

    kind: ClassVar[str] = ""

    def __init__(self, template: Template | str):
        self.template = template if isinstance(template, Template) else load_template(template)
        self.pieces = _guides.output_pieces(self.template, self.kind) if self.kind in _guides.TASK_FIELDS else []
        self.parser = ReplyParser(self.pieces)

    @property
    def name(self) -> str:
        return self.template.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.template.path or self.name!r})"

    def messages(self, *questions: Question) -> Messages:
        """The chat messages asking the question(s)."""
        (q,) = questions
        return _messages(self.template, _render_single(self.template, q))

    def guide(self, *questions: Question, max_new_tokens: int | None = None) -> str:
        """The regular expression a whole reply must match (tasks/guides.py)."""
        names = ("answer1", "answer2") if self.kind == "pairwise" else ("answer",)
        return _guides.build_guide(self.template, self.kind, dict(zip(names, questions, strict=True)), max_new_tokens)

    def guides(
        self, items: Sequence[Question | tuple[Question, ...]], guided: bool, limit: int | None = None
    ) -> list[str] | None:
        """One guide per prompt when `guided`, else None (what `Engine.generate` takes)."""
        if not guided:
            return None
        return [self.guide(*(i if isinstance(i, tuple) else (i,)), max_new_tokens=limit) for i in items]

    def token_limit(self, guided: bool = False, max_new_tokens: int | None = None) -> int:
        return max_new_tokens or self.template.token_limit(guided)

    def generation(self, guided: bool = False, max_new_tokens: int | None = None) -> dict[str, Any]:
        """`max_new_tokens` and `stop` for `Engine.generate` (`max_new_tokens` overrides the template's)."""
        return {"max_new_tokens": self.token_limit(guided, max_new_tokens), "stop": list(self.template.stop)}

    def value_at(self, field: str, **values: Any) -> int:
        """Where `field`'s value starts in the reply `output` writes from `values` (the other fields; answers as
        `format_target` writes them, stripped): the position a loss on that field scores (training/brier.py)."""
        marker = "\x00"
        clean = {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
        return self.template.output.format(**{**clean, field: marker}).index(marker)

    def check(self, max_new_tokens: int | None = None) -> None:
        """Refuse (one-line ConfigError) a template whose output cannot be guided, before any sampling."""
        _guides.check_template(self.template, self.kind, max_new_tokens)

    def record(self) -> dict[str, Any]:
        return self.template.record()


class AnswerTask(Task):
    """Answer only."""

    kind = "answer"

    def answer_text(self, text: str) -> str:
        """The part of a reply holding the answer (what a grader reads)."""
        return self.parser.answer_text(text) or ""

    def parse(self, text: str, q: Question) -> str | None:
        """The normalized answer, or None."""
        return self.parser.answer(text, q)


class SingleTask(AnswerTask):
    """Answer, then a 0-100 confidence."""

    kind = "single"

    def parse(self, text: str, q: Question) -> SingleParse:  # type: ignore[override]
        """Answer + confidence; the confidence must follow its label (an unlabelled number could be the answer)."""
        text = bounded_text(text) if isinstance(text, str) else ""
        answer = self.parser.answer(text, q)
        confidence = self.parser.confidence(text)
        return SingleParse(answer, confidence, matches(answer, q), answer is not None and confidence is not None)

    def answer_text(self, text: str) -> str:
        return super().answer_text(bounded_text(text) if isinstance(text, str) else "")

    def expected_confidence(self, logprobs: Sequence[TokenLogprob] | None) -> float | None:
        """The probability-weighted confidence at the digits after this template's confidence label."""
        return expected_confidence(logprobs, self.parser.labels["confidence"].at_end)

    def format_target(self, answer: str, confidence: float, q: Question) -> str:
        """The assistant text of a training example: the answer and the confidence as a whole percentage."""
        if not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
            raise DataError(f"question {q.id}: confidence must lie in [0, 1], got {confidence!r}")
        answer = check_answer(answer, f"question {q.id}")
        return self.template.output.format(answer=answer, confidence=int(round(confidence * 100)))


class PairwiseTask(Task):
    """Which of two questions the model more likely answers right (1 or 2), then both answers."""

    kind = "pairwise"

    def messages(self, *questions: Question) -> Messages:
        t = self.template
        if not isinstance(t.user, str):
            raise ConfigError(f"template {t.name!r}: 'user' must be one text with {{question1}} and {{question2}}")

        def render(q: Question) -> str:
            return t.question[q.answer_type].format(question=q.question, choices=format_choices(q)).strip()

        q1, q2 = questions
        return _messages(t, t.user.format(question1=render(q1), question2=render(q2)))

    def answer_texts(self, text: str) -> tuple[str | None, str | None]:
        """The two answer fields of a reply (None where one is missing)."""
        text = bounded_text(text) if isinstance(text, str) else ""
        return self.parser.answer_text(text, "answer1"), self.parser.answer_text(text, "answer2")

    def choice_probability(self, logprobs: Sequence[TokenLogprob] | None) -> float | None:
        return choice_probability(logprobs, self.parser.labels["choice"].at_end)

    def parse(self, text: str, q1: Question, q2: Question, logprobs: Sequence[TokenLogprob] | None = None) -> PairParse:
        """Choice (1, 2 or None) and both answers; `p_first` from `logprobs` if given."""
        text = bounded_text(text) if isinstance(text, str) else ""
        parts = self.answer_texts(text)
        answers = [
            self.parser.answer(text, q, f"answer{k}") if p is not None else None
            for k, p, q in zip((1, 2), parts, (q1, q2))
        ]
        try:
            p_first = self.choice_probability(logprobs)
        except Exception:
            p_first = None
        choice = self.parser.choice(text)
        return PairParse(
            choice=choice,
            answer1=answers[0],
            answer2=answers[1],
            correct1=matches(answers[0], q1),
            correct2=matches(answers[1], q2),
            p_first=p_first,
            parsed=choice is not None and all(p is not None for p in parts),
        )

    def format_target(self, choice: int, answer1: str, answer2: str, q1: Question, q2: Question) -> str:
        """The assistant text of a training example: the choice first, then both answers."""
        if choice not in (1, 2):
            raise DataError(f"pair {q1.id} / {q2.id}: choice must be 1 or 2, got {choice!r}")
        return self.template.output.format(
            choice=choice,
            answer1=check_answer(answer1, f"question {q1.id}"),
            answer2=check_answer(answer2, f"question {q2.id}"),
        )


class PTrueTask(Task):
    """P(True): is the proposed answer correct? Read from the first reply token's log-probabilities."""

    kind = "p_true"

    def messages(self, *questions: Question, proposed: str = "") -> Messages:  # type: ignore[override]
        (q,) = questions
        t = self.template
        if not isinstance(t.user, dict):
            raise ConfigError(f"template {t.name!r}: 'user' must map answer types to text")
        text = (
            t.user[q.answer_type]
            .format(question=q.question, choices=format_choices(q), proposed=" ".join(proposed.split()))
            .strip()
        )
        return _messages(t, text)


KINDS: dict[str, type[Task]] = {
    "answer": AnswerTask,
    "single": SingleTask,
    "pairwise": PairwiseTask,
    "p_true": PTrueTask,
}


@functools.lru_cache(maxsize=64)
def _cached(kind: str, template: str) -> Task:
    return KINDS[kind](template)


@overload
def get_task(kind: Literal["answer"], template: Template | str | None = None) -> AnswerTask: ...
@overload
def get_task(kind: Literal["single"], template: Template | str | None = None) -> SingleTask: ...
@overload
def get_task(kind: Literal["pairwise"], template: Template | str | None = None) -> PairwiseTask: ...
@overload
def get_task(kind: Literal["p_true"], template: Template | str | None = None) -> PTrueTask: ...
@overload
def get_task(kind: str, template: Template | str | None = None) -> Task: ...
def get_task(kind: str, template: Template | str | None = None) -> Task:
    """The Task of `kind` for a template (default: the bundled one of that name); built once per template."""
    if kind not in KINDS:
        raise ConfigError(f"task {kind!r}: unknown (known: {', '.join(KINDS)})")
    if isinstance(template, Template):
        return KINDS[kind](template)
    return _cached(kind, template or kind)


@dataclass(frozen=True)
class Tasks:
    """The reply formats of one study, picked once (targets.answer_template / single_template /
    pairwise_template, and the bundled p_true): the same objects ask, guide, parse and write targets in every
    stage."""

    answer: AnswerTask
    single: SingleTask
    pairwise: PairwiseTask
    p_true: PTrueTask

    @classmethod
    def of(cls, targets: Any = None) -> Tasks:
        """From a TargetsConfig (None: the bundled templates)."""
        names = (
            (targets.answer_template, targets.single_template, targets.pairwise_template)
            if targets is not None
            else ("answer", "single", "pairwise")
        )
        return cls(
            get_task("answer", names[0]),
            get_task("single", names[1]),
            get_task("pairwise", names[2]),
            get_task("p_true"),
        )
