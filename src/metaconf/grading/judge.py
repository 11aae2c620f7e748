"""Graders behind one interface: rules (default, offline) or an LLM judge for open-ended answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from metaconf.data.schema import Question
from metaconf.errors import ConfigError, DataError
from metaconf.grading.extract import extract_answer, is_correct
from metaconf.grading.normalize import answer_region, normalize_open

if TYPE_CHECKING:
    from metaconf.engines.base import Engine


@runtime_checkable
class Grader(Protocol):
    """Grades model texts against their questions' gold answers, one bool per text."""

    def grade(self, texts: list[str], questions: list[Question]) -> list[bool]: ...


def _check_lengths(texts: list[str], questions: list[Question]) -> None:
    if len(texts) != len(questions):
        raise DataError(f"grader: {len(texts)} texts for {len(questions)} questions; they must pair up")


class RuleGrader:
    """The default grader: `is_correct` (rules per answer type, docs/grading.md), no model needed."""

    def grade(self, texts: list[str], questions: list[Question]) -> list[bool]:
        _check_lengths(texts, questions)
        return [is_correct(t, q) for t, q in zip(texts, questions)]


DEFAULT_JUDGE_TEMPLATE = (
    "You are grading an answer to a trivia question.\n"
    "Question: {question}\n"
    "Accepted gold answers: {gold}\n"
    "Model's answer: {answer}\n"
    "Does the model's answer mean the same as one of the gold answers? Reply with yes or no only."
)
JUDGE_PLACEHOLDERS = ("{question}", "{gold}", "{answer}")
_JUDGE_WORDS = {"yes": "yes", "correct": "yes", "true": "yes", "no": "no", "incorrect": "no", "false": "no"}
_MAX_ANSWER_CHARS = 500


def missing_placeholders(template: str) -> list[str]:
    """The judge placeholders ({question}, {gold}, {answer}) that `template` lacks."""
    return [field for field in JUDGE_PLACEHOLDERS if field not in template]


def template_problem(template: str) -> str | None:
    """Why `template` cannot be a judge prompt, or None: checked when the config loads, so a bad template is one line
    then, not a failure while grading. Its fields are exactly {question}, {gold} and {answer} (each at least once;
    no other name, no attribute or index, no conversion or format spec), and a literal brace is doubled ({{ }})."""
    import string

    try:
        fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # "Single '{' encountered in format string", ...
        return f"{exc}; write a literal brace as {{{{ or }}}}"
    allowed = {p.strip("{}") for p in JUDGE_PLACEHOLDERS}
    for name, conv, spec in fields:
        if name not in allowed:
            return f"unknown placeholder {{{name}}} (allowed: {', '.join(JUDGE_PLACEHOLDERS)}); a literal brace is {{{{"
        if conv or spec:
            return f"placeholder {{{name}}} takes no conversion or format spec"
    missing = missing_placeholders(template)
    return f"missing the {', '.join(missing)} placeholder(s)" if missing else None


def parse_judge_reply(text: str) -> bool | None:
    """True/False for a judge reply that starts with (or contains) yes/correct or no/incorrect, else None."""
    from metaconf.grading.extract import boolean_word

    word = boolean_word(str(text), _JUDGE_WORDS)
    return None if word is None else word == "yes"


class JudgeGrader:
    """Asks an engine (greedy, temperature 0) whether each open-ended answer matches a gold alias.

    Multiple choice, numeric and boolean questions are graded by the rules (matching is exact for them, as in
    the paper). For open answers: no extracted answer -> False without asking; normalised equality with an alias
    -> True without asking; otherwise the judge decides. A reply that is neither yes nor no falls back to the
    rule grade. `template` is a str.format template with {question}, {gold} and {answer}.
    """

    def __init__(self, engine: Engine, template: str = DEFAULT_JUDGE_TEMPLATE, max_new_tokens: int = 8):
        problem = template_problem(template)
        if problem:
            raise ConfigError(f"judge template: {problem}")
        self.engine = engine
        self.template = template
        self.max_new_tokens = max_new_tokens
        self.unparsed = 0  # judge replies that were neither yes nor no (graded by the rules instead)

    def prompt(self, text: str, question: Question) -> list[dict[str, str]]:
        """The chat messages that ask the judge about one answer."""
        answer = answer_region(text)[:_MAX_ANSWER_CHARS]
        content = self.template.format(question=question.question, gold="; ".join(question.answers), answer=answer)
        return [{"role": "user", "content": content}]

    def grade(self, texts: list[str], questions: list[Question]) -> list[bool]:
        _check_lengths(texts, questions)
        grades = [is_correct(t, q) for t, q in zip(texts, questions)]
        ask: list[int] = []
        for i, (text, q) in enumerate(zip(texts, questions)):
            if q.answer_type != "open":
                continue
            extracted = extract_answer(text, q)
            if extracted is None:
                grades[i] = False
            elif extracted not in {normalize_open(a) for a in q.answers}:
                ask.append(i)
        if ask:
            replies = self.engine.generate(
                [self.prompt(texts[i], questions[i]) for i in ask],
                n=1,
                temperature=0.0,
                max_new_tokens=self.max_new_tokens,
                seed=0,
                desc="judge",
            )
            for i, completions in zip(ask, replies):
                verdict = parse_judge_reply(completions[0].text)
                if verdict is None:
                    self.unparsed += 1
                else:
                    grades[i] = verdict
        return grades
