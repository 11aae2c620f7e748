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
from metaconf.tasks.templates import Template

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
    # not part of a longer token: "1e2" (an exponent), "0x50" (hex) and "x50" are no confidence, never 0.01 or 0
    r"(?<![\w.])(?<![eE][-+])([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?![0-9]|\.[0-9]|[eE][-+]?[0-9]|[xX][0-9A-Fa-f])"
    r"(?:\s*(%|percent\b|per\s?cent\b)|\s*(?:/|out\s+of)\s*([0-9]+(?:\.[0-9]+)?))?",
    re.I,
)
# How a confidence label may read besides its key ("Confidence level: 80%", "confidence is high").
_CONF_SUFFIX = r"(?:\s+(?:level|score))?\s*(?:[:=]|is\b|-)?"
_CONF_LABEL = re.compile(r"\bconfidence" + _CONF_SUFFIX, re.I)  # parse_confidence's label on any free text
_MINUS = "-\u2212\u2012\u2013\ufe63\uff0d"  # hyphen-minus, minus sign, figure / en dash, small / full-width hyphen
_CHOICE_VALUE = r"([12])(?![0-9]|\.[0-9])"


def _number_value(match: re.Match[str], text: str) -> float | None:
    """One number under the documented rule; None when negative or out of [0, 1]."""
    start = match.start(1)
    if start > 0 and text[start - 1] in _MINUS and (start < 2 or not text[start - 2].isalnum()):
        return None  # a negative number is never a confidence ("-5%", "\u22125%" with the minus sign)
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
    return confidence_value(_line_after(text, label.end()) if label else text)


def _line_after(text: str, end: int) -> str:
    """The rest of the line from `end`; the next line when that is empty ("Confidence:\n70")."""
    return text[end:].split("\n", 1)[0] or text[end:].lstrip("\n").split("\n", 1)[0]


def confidence_value(text: str) -> float | None:
    """The confidence stated in `text` (already cut to the part that states it) under parse_confidence's rule."""
    values: set[float | None] = set()
    for m in _NUMBER.finditer(text):
        values.add(_number_value(m, text))
        if len(values) > 1:
            return None  # several different numbers; a None among them also lands here as None
    if values:
        return values.pop()
    words = {VERBAL_CONFIDENCE[w.lower()] for w in _WORDS.findall(text)}
    return words.pop() if len(words) == 1 else None


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


def _words(text: str) -> str:
    """Words as a regex: case as written is ignored by the caller (re.I), any spacing between them."""
    return r"\s*".join(re.escape(w.lower()) for w in text.split())


def _loose(text: str) -> str:
    """Literal text as a regex that allows any spacing where it has spaces."""
    return r"\s*".join(re.escape(part) for part in text.split())


_LABEL_LINE = re.compile(r"(?P<pre>.*?)(?P<key>\w+(?:\s+\w+)*)\s*(?P<sep>[:=])?(?P<rest>[^:=]*)", re.S)


@dataclass(frozen=True)
class FieldLabel:
    """Where one field of a reply starts, derived from the literal text before it in the template's `output`.

    The label is that text's last line: its key words (what precedes ':' or '=') are matched in any case and
    spacing, the words after the separator ("Choice: Question {choice}") are optional. A field with no words
    before it has no label."""

    name: str
    find: re.Pattern[str] | None  # the label anywhere in a reply; the value starts at its end
    at_end: re.Pattern[str] | None  # the label closing the text so far (the field's first token comes next)
    until: re.Pattern[str] | None  # same-line text right after the field: where its value ends (None: line end)

    @classmethod
    def derive(cls, name: str, before: str, after: str) -> FieldLabel:
        line = before.rsplit("\n", 1)[-1].strip()
        tail = after.split("\n", 1)[0].strip()
        until = re.compile(_loose(tail), re.I) if tail else None
        m = _LABEL_LINE.fullmatch(line)
        if not m:
            exact = re.compile(_loose(line), re.I) if line else None
            return cls(name, exact, re.compile(_loose(line) + r"\s*$", re.I) if line else None, until)
        key = r"\b" + _words(m["key"])
        sep = r"\s*[:=]" if m["sep"] else ""
        rest = rf"(?:{_words(m['rest'])}\s*)?" if m["rest"].strip() else ""
        if name == "confidence":
            find, at_end = key + _CONF_SUFFIX, key + sep + r"\s*$"
        elif name == "choice":
            find = key + (r"\s*[:=]?" if sep else "") + r"\s*" + rest + r"#?\s*"
            find, at_end = find + _CHOICE_VALUE, find + "$"
        else:
            find = at_end = key + (sep or r"\b") + (r"\s*" + rest if rest else "")
        return cls(name, re.compile(find, re.I), re.compile(at_end, re.I), until)

    def value(self, text: str) -> str | None:
        """The field's text in a reply: what follows its label on that line (None: no label)."""
        match = self.find.search(text) if self.find else None
        if match is None:
            return None
        line = text[match.end() :].split("\n", 1)[0]
        cut = self.until.search(line) if self.until else None
        return (line[: cut.start()] if cut else line).strip()


class ReplyParser:
    """Reads one template's replies: each field found by its label in the template's `output` (FieldLabel).

    Lenient on free text as the bundled parsers always were: a field's label may appear anywhere, in any case;
    an answer without its label is the text before the next field's label; a confidence is read by
    parse_confidence's rule from the rest of its line; a choice is a 1 or 2 right after its label."""

    def __init__(self, pieces: Sequence[tuple[str, str | None]]):
        self.labels: dict[str, FieldLabel] = {}
        for k, (literal, name) in enumerate(pieces):
            if name is not None:
                after = "".join(lit for lit, _ in pieces[k + 1 : k + 2])
                self.labels[name] = FieldLabel.derive(name, literal, after)

    def answer_text(self, text: str, field: str = "answer") -> str | None:
        """The text holding the answer field (for `answer`, never None: without its label, the text before
        the next field's label, else the whole text; the grader then extracts from it)."""
        label = self.labels[field]
        found = label.value(text)
        if found is not None or field != "answer":
            return found
        later = [lb.find.search(text) for n, lb in self.labels.items() if n != field and lb.find is not None]
        cut = min((m.start() for m in later if m), default=None)
        return (text[:cut] if cut is not None else text).strip()

    def answer(self, text: str, q: Question, field: str = "answer") -> str | None:
        """The normalized answer of one answer field, or None."""
        part = self.answer_text(text, field)
        if part is None:
            return None
        try:
            return grading.extract_answer(part, q)
        except Exception:  # a grader failure on odd text is a parse failure, never a crash
            return None

    def confidence(self, text: str) -> float | None:
        """The confidence after its label (an unlabelled number could be the answer itself: None)."""
        label = self.labels["confidence"]
        match = label.find.search(text) if label.find else None
        return confidence_value(_line_after(text, match.end())) if match else None

    def choice(self, text: str) -> int | None:
        match = self.labels["choice"].find.search(text)
        return int(match.group(1)) if match else None


def matches(answer: str | None, q: Question) -> bool:
    """Whether an extracted answer is right (a grader failure on odd text counts as wrong, never a crash)."""
    if answer is None:
        return False
    try:
        return bool(grading.answer_matches(answer, q))
    except Exception:
        return False


def choice_probability(logprobs: Sequence[TokenLogprob] | None, prefix: re.Pattern[str] | None = None) -> float | None:
    """P(choice = 1) at the token right after the choice label, renormalised over the tokens reading '1' or '2'.
    `prefix`: the label closing the text so far (default: the bundled pairwise template's "Choice: Question")."""
    if not logprobs:
        return None
    prefix = prefix or _bundled("pairwise").labels["choice"].at_end
    seen = ""
    for tok in logprobs:
        token = getattr(tok, "token", "")
        if not isinstance(token, str):
            return None
        if token.strip() in ("1", "2") and prefix.search(seen):
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


CONFIDENCE_VALUES = range(101)  # the whole percentages a guided reply may state


def _prior_mean(prefix: str) -> float | None:
    """Mean of the allowed confidence values whose digits start with `prefix` (None: no such value)."""
    values = [v for v in CONFIDENCE_VALUES if str(v).startswith(prefix)]
    return sum(values) / len(values) if values else None


def _digits_start(logprobs: Sequence[TokenLogprob], prefix: re.Pattern[str]) -> int | None:
    """Index of the first digit token right after the confidence label, or None."""
    seen = ""
    for i, tok in enumerate(logprobs):
        token = getattr(tok, "token", None)
        if not isinstance(token, str):
            return None
        if prefix.search(seen) and token.strip().isdigit():
            return i
        seen += token
    return None


def expected_confidence(logprobs: Sequence[TokenLogprob] | None, prefix: re.Pattern[str] | None = None) -> float | None:
    """The probability-weighted confidence in [0, 1] at the confidence digits of a reply, or None.

    Read from the tokens right after the confidence label (`prefix`: that label closing the text so far; default
    the bundled single template's "Confidence:") and their top alternatives (under guidance: the masked,
    renormalised distribution, so the alternatives are exactly the allowed continuations). At each digit position
    every alternative is weighted by its probability (renormalised over the alternatives that are digits or end
    the number): the sampled token by the expectation of the positions after it, an alternative that ends the
    number by the number so far, and an unsampled digit by the mean of the allowed values (0-100) it can still
    become. With one token per digit this is exact at every position after the first; a tokenizer with one token
    per whole number ("85") makes it exact outright.
    """
    if not logprobs:
        return None
    start = _digits_start(logprobs, prefix or _bundled("single").labels["confidence"].at_end)
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


def _bundled(kind: str) -> ReplyParser:
    from metaconf.tasks.task import get_task

    return get_task(kind).parser


# -- the bundled templates' parsers and target writers as plain functions (stable names; see tasks/task.py) -------
def answer_part(text: str) -> str:
    """The text holding the answer: what follows "Answer:" on its line, else the text before any
    "Confidence" label (the grader then extracts from it)."""
    return _bundled("single").answer_text(text) or ""


def parse_answer(text: str, q: Question) -> str | None:
    """The normalized answer in an answer-only (or single) completion, or None."""
    return _bundled("single").answer(text, q)


def single_answer_text(text: str) -> str:
    """The part of a single-task completion that holds the answer (what a grader reads)."""
    return answer_part(bounded_text(text) if isinstance(text, str) else "")


def parse_single(text: str, q: Question) -> SingleParse:
    """Answer + confidence from a single-task completion. The confidence must follow a "Confidence" label
    (an unlabelled number could be the answer itself)."""
    from metaconf.tasks.task import get_task

    return get_task("single").parse(text, q)


def pair_answer_texts(text: str) -> tuple[str | None, str | None]:
    """The "Answer 1:" and "Answer 2:" lines of a pairwise completion (None where a line is missing)."""
    from metaconf.tasks.task import get_task

    return get_task("pairwise").answer_texts(text)


def parse_pairwise(text: str, q1: Question, q2: Question, logprobs: Sequence[TokenLogprob] | None = None) -> PairParse:
    """Choice (1, 2 or None) and both answers from a pairwise completion; `p_first` from `logprobs` if given."""
    from metaconf.tasks.task import get_task

    return get_task("pairwise").parse(text, q1, q2, logprobs)


def check_answer(answer: str, where: str) -> str:
    """A target's answer: one non-empty line (DataError otherwise)."""
    if not isinstance(answer, str) or not answer.strip() or "\n" in answer:
        raise DataError(f"{where}: the answer must be one non-empty line, got {answer!r}")
    return answer.strip()


def format_single_target(answer: str, confidence: float, q: Question, template: Template | str = "single") -> str:
    """The assistant text of a single-task example: the answer and the confidence as a whole percentage."""
    from metaconf.tasks.task import get_task

    return get_task("single", template).format_target(answer, confidence, q)


def format_pairwise_target(
    choice: int, answer1: str, answer2: str, q1: Question, q2: Question, template: Template | str = "pairwise"
) -> str:
    """The assistant text of a pairwise example: the choice first, then both answers."""
    from metaconf.tasks.task import get_task

    return get_task("pairwise", template).format_target(choice, answer1, answer2, q1, q2)
