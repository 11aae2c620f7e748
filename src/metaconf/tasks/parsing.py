"""Read the model's answers, confidences and pairwise choices; and write training targets in the same format.

Parsers never raise and never guess: text they cannot read unambiguously gives None, and the parse result
says so (`parsed=False`). Model output is untrusted text and is only matched with regular expressions.
The formatters write exactly what the parsers read back (tested as a round trip).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from metaconf import grading
from metaconf.data.schema import Question
from metaconf.engines.types import TokenLogprob
from metaconf.errors import DataError
from metaconf.grading.normalize import bounded_text
from metaconf.tasks.templates import Template, load_template

# Words read as a confidence only when the text holds no number at all (documented in docs/tasks.md).
VERBAL_CONFIDENCE: dict[str, float] = {
    "very high": 0.9,
    "high": 0.8,
    "moderate": 0.5,
    "medium": 0.5,
    "low": 0.2,
    "very low": 0.1,
}
_WORDS = re.compile(r"\b(" + "|".join(sorted(VERBAL_CONFIDENCE, key=len, reverse=True)) + r")\b", re.I)
_NUMBER = re.compile(
    r"(?<![\w.])([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?![0-9]|\.[0-9])"
    r"(?:\s*(%|percent\b|per\s?cent\b)|\s*(?:/|out\s+of)\s*([0-9]+(?:\.[0-9]+)?))?",
    re.I,
)
_CONF_LABEL = re.compile(r"\bconfidence(?:\s+(?:level|score))?\s*(?:[:=]|is\b|-)?", re.I)
_ANSWER_LABEL = re.compile(r"\banswer\s*[:=]", re.I)
_CHOICE = re.compile(r"\bchoice\s*[:=]?\s*(?:question\s*)?#?\s*([12])(?![0-9]|\.[0-9])", re.I)
_CHOICE_PREFIX = re.compile(r"\bchoice\s*[:=]?\s*(?:question\s*)?#?\s*$", re.I)


def _number_value(match: re.Match[str], text: str) -> float | None:
    """One number under the documented rule; None when negative or out of [0, 1]."""
    start = match.start(1)
    if start > 0 and text[start - 1] == "-" and (start < 2 or not text[start - 2].isalnum()):
        return None  # a negative number is never a confidence
    raw, percent, denominator = match.group(1), match.group(2), match.group(3)
    value = float(raw)
    if percent:
        value /= 100.0
    elif denominator is not None:
        denom = float(denominator)
        if denom <= 0:
            return None
        value /= denom
    elif "." in raw and value <= 1.0:
        pass  # "0.85", ".85", "1.0": a probability
    else:
        value /= 100.0  # integers ("85", "1") and decimals above 1 ("85.5") are percentages
    return value if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def parse_confidence(text: str) -> float | None:
    """A confidence in [0, 1] read from `text`, or None.

    Rule: if the text names "confidence", only the rest of that line is read. "85%", "85 percent", "85/100",
    "8 out of 10" are explicit; a number with a decimal point up to 1 ("0.85", ".85", "1.0") is a probability;
    any other number ("85", "1", "85.5") is a percentage, so a bare "1" means 1%. Out of range, negative, or
    several different numbers (e.g. "70-80") give None. Without any number, the words in VERBAL_CONFIDENCE
    ("high" = 0.8, ...) are read; several different ones give None.
    """
    if not isinstance(text, str):
        return None
    text = bounded_text(text)
    label = _CONF_LABEL.search(text)
    if label:
        text = text[label.end() :].split("\n", 1)[0] or text[label.end() :].lstrip("\n").split("\n", 1)[0]
    values: set[float | None] = set()
    for m in _NUMBER.finditer(text):
        values.add(_number_value(m, text))
        if len(values) > 1:
            return None  # several different numbers; a None among them also lands here as None
    if values:
        return values.pop()
    words = {VERBAL_CONFIDENCE[w.lower()] for w in _WORDS.findall(text)}
    return words.pop() if len(words) == 1 else None


def _labelled_line(text: str, label: re.Pattern[str]) -> str | None:
    match = label.search(text)
    return text[match.end() :].split("\n", 1)[0].strip() if match else None


def answer_part(text: str) -> str:
    """The text holding the answer: what follows "Answer:" on its line, else the text before any
    "Confidence" label (the grader then extracts from it)."""
    labelled = _labelled_line(text, _ANSWER_LABEL)
    if labelled is not None:
        return labelled
    conf = _CONF_LABEL.search(text)
    return (text[: conf.start()] if conf else text).strip()


def parse_answer(text: str, q: Question) -> str | None:
    """The normalized answer in an answer-only (or single) completion, or None."""
    try:
        return grading.extract_answer(answer_part(text), q)
    except Exception:  # a grader failure on odd text is a parse failure, never a crash
        return None


def _matches(answer: str | None, q: Question) -> bool:
    if answer is None:
        return False
    try:
        return bool(grading.answer_matches(answer, q))
    except Exception:
        return False


@dataclass
class SingleParse:
    answer: str | None
    confidence: float | None
    correct: bool
    parsed: bool  # both the answer and the confidence were read


@dataclass
class PairParse:
    choice: int | None
    answer1: str | None
    answer2: str | None
    correct1: bool
    correct2: bool
    p_first: float | None  # P(choice = 1) renormalised over the '1'/'2' tokens, from log-probabilities
    # the choice and both answer lines were read; an answer line with nothing gradable in it (a guided open answer
    # cut at its length bound, e.g. 'The answer is "The') is a wrong answer, not an unreadable reply
    parsed: bool


def single_answer_text(text: str) -> str:
    """The part of a single-task completion that holds the answer (what a grader reads)."""
    return answer_part(bounded_text(text) if isinstance(text, str) else "")


def parse_single(text: str, q: Question) -> SingleParse:
    """Answer + confidence from a single-task completion. The confidence must follow a "Confidence" label
    (an unlabelled number could be the answer itself)."""
    text = bounded_text(text) if isinstance(text, str) else ""
    answer = parse_answer(text, q)
    conf_match = _CONF_LABEL.search(text)
    confidence = parse_confidence(text[conf_match.start() :]) if conf_match else None
    return SingleParse(answer, confidence, _matches(answer, q), answer is not None and confidence is not None)


def choice_probability(logprobs: Sequence[TokenLogprob] | None) -> float | None:
    """P(choice = 1) at the token right after "Choice:", renormalised over the tokens reading '1' or '2'."""
    if not logprobs:
        return None
    seen = ""
    for tok in logprobs:
        token = getattr(tok, "token", "")
        if not isinstance(token, str):
            return None
        if token.strip() in ("1", "2") and _CHOICE_PREFIX.search(seen):
            options = dict(getattr(tok, "top", None) or {})
            options.setdefault(token, tok.logprob)
            mass = {"1": 0.0, "2": 0.0}
            for alt, lp in options.items():
                key = alt.strip() if isinstance(alt, str) else ""
                if key in mass and isinstance(lp, (int, float)) and not math.isnan(lp):
                    mass[key] += math.exp(min(float(lp), 0.0))
            total = mass["1"] + mass["2"]
            return mass["1"] / total if total > 0 else None
        seen += token
    return None


_CONF_PREFIX = re.compile(r"\bconfidence\s*[:=]\s*$", re.I)
CONFIDENCE_VALUES = range(101)  # the whole percentages a guided reply may state


def _prior_mean(prefix: str) -> float | None:
    """Mean of the allowed confidence values whose digits start with `prefix` (None: no such value)."""
    values = [v for v in CONFIDENCE_VALUES if str(v).startswith(prefix)]
    return sum(values) / len(values) if values else None


def expected_confidence(logprobs: Sequence[TokenLogprob] | None) -> float | None:
    """The probability-weighted confidence in [0, 1] at the confidence digits of a reply, or None.

    Read from the tokens right after "Confidence:" and their top alternatives (under guidance: the masked,
    renormalised distribution, so the alternatives are exactly the allowed continuations). At each digit position
    every alternative is weighted by its probability (renormalised over the alternatives that are digits or end
    the number): the sampled token by the expectation of the positions after it, an alternative that ends the
    number by the number so far, and an unsampled digit by the mean of the allowed values (0-100) it can still
    become. With one token per digit this is exact at every position after the first; a tokenizer with one token
    per whole number ("85") makes it exact outright.
    """
    if not logprobs:
        return None
    seen, start = "", None
    for i, tok in enumerate(logprobs):
        token = getattr(tok, "token", None)
        if not isinstance(token, str):
            return None
        if _CONF_PREFIX.search(seen) and token.strip().isdigit():
            start = i
            break
        seen += token
    if start is None:
        return None

    def level(i: int, prefix: str) -> float | None:
        """Expected value of the number given its digits so far (`prefix`), from position i on."""
        tok = logprobs[i] if i < len(logprobs) else None
        if tok is None or not isinstance(tok.token, str):
            return float(prefix) if prefix else None  # the reply ended after the digits
        sampled_digits = tok.token.strip() if tok.token.strip().isdigit() else None
        options = dict(tok.top or {})
        options.setdefault(tok.token, tok.logprob)
        mass = total = 0.0
        for alt, lp in options.items():
            if not isinstance(alt, str) or not isinstance(lp, (int, float)) or math.isnan(lp) or lp == -math.inf:
                continue
            digits = alt.strip()
            if alt == tok.token:
                value = level(i + 1, prefix + sampled_digits) if sampled_digits else float(prefix)
            elif digits.isdigit():
                value = _prior_mean(prefix + digits)
            elif prefix:
                value = float(prefix)  # '%', a newline, the end: the number stops at the prefix
            else:
                continue
            if value is None:
                continue
            p = math.exp(min(float(lp), 0.0))
            mass += p * value
            total += p
        return mass / total if total > 0 else None

    value = level(start, "")
    return min(max(value / 100.0, 0.0), 1.0) if value is not None else None


def pair_answer_texts(text: str) -> tuple[str | None, str | None]:
    """The "Answer 1:" and "Answer 2:" lines of a pairwise completion (None where a line is missing)."""
    text = bounded_text(text) if isinstance(text, str) else ""
    first, second = (_labelled_line(text, re.compile(rf"\banswer\s*{k}\s*[:=]", re.I)) for k in (1, 2))
    return first, second


def parse_pairwise(text: str, q1: Question, q2: Question, logprobs: Sequence[TokenLogprob] | None = None) -> PairParse:
    """Choice (1, 2 or None) and both answers from a pairwise completion; `p_first` from `logprobs` if given."""
    text = bounded_text(text) if isinstance(text, str) else ""
    choice_match = _CHOICE.search(text)
    choice = int(choice_match.group(1)) if choice_match else None
    answers, lines = [], 0
    for part, q in zip(pair_answer_texts(text), (q1, q2)):
        lines += part is not None
        try:
            answers.append(grading.extract_answer(part, q) if part is not None else None)
        except Exception:
            answers.append(None)
    try:
        p_first = choice_probability(logprobs)
    except Exception:
        p_first = None
    return PairParse(
        choice=choice,
        answer1=answers[0],
        answer2=answers[1],
        correct1=_matches(answers[0], q1),
        correct2=_matches(answers[1], q2),
        p_first=p_first,
        parsed=choice is not None and lines == 2,
    )


def _check_answer(answer: str, where: str) -> str:
    if not isinstance(answer, str) or not answer.strip() or "\n" in answer:
        raise DataError(f"{where}: the answer must be one non-empty line, got {answer!r}")
    return answer.strip()


def format_single_target(answer: str, confidence: float, q: Question, template: Template | str = "single") -> str:
    """The assistant text of a single-task example: the answer and the confidence as a whole percentage."""
    if not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
        raise DataError(f"question {q.id}: confidence must lie in [0, 1], got {confidence!r}")
    t = template if isinstance(template, Template) else load_template(template)
    return t.output.format(answer=_check_answer(answer, f"question {q.id}"), confidence=int(round(confidence * 100)))


def format_pairwise_target(
    choice: int, answer1: str, answer2: str, q1: Question, q2: Question, template: Template | str = "pairwise"
) -> str:
    """The assistant text of a pairwise example: the choice first, then both answers."""
    if choice not in (1, 2):
        raise DataError(f"pair {q1.id} / {q2.id}: choice must be 1 or 2, got {choice!r}")
    t = template if isinstance(template, Template) else load_template(template)
    return t.output.format(
        choice=choice,
        answer1=_check_answer(answer1, f"question {q1.id}"),
        answer2=_check_answer(answer2, f"question {q2.id}"),
    )
