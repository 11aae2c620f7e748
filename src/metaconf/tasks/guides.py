"""Guides for guided decoding: the regular expression a whole reply must match, derived from a template's `output`.

A template's `output` (e.g. "Answer: {answer}\\nConfidence: {confidence}%") is both the training target format and,
here, the reply grammar: literal text is matched exactly, each field by its pattern (the answer by the question's
answer type, the confidence as a whole percentage 0-100, the choice as 1 or 2). A user's own template gets its own
guide; a template whose output cannot be turned into one is refused with a one-line `ConfigError`.

Regex dialect (what llguidance, xgrammar and vLLM's `regex` structured output all accept): literal characters,
`\\`-escaped punctuation, `\\n`, character classes of ASCII ranges (`[0-9]`, `[ -~]`), groups `( )`, alternation
`|`, `?` and bounded `{m,n}` repeats. No `\\d` (Unicode digits in Rust's regex), no anchors (the whole completion
must match anyway), no lookaround or back-references.

Length: every field is bounded so that the whole reply fits in the template's guided token limit
(`guided_max_new_tokens`, else `max_new_tokens`) even if each token spelled one byte (a token is never shorter):
open answers are printable ASCII (starting with a letter or digit) and share the bytes left over with numeric ones.
"""

from __future__ import annotations

import string
import warnings
from typing import Any

from metaconf.data.schema import Question
from metaconf.errors import ConfigError
from metaconf.tasks.templates import Template, load_template

CONFIDENCE_PATTERN = "(100|[1-9]?[0-9])"  # a whole percentage, as `format_single_target` writes it
CHOICE_PATTERN = "[12]"
NUMERIC_MAX_BYTES = 1 + 9 + 1 + 3
BOOLEAN_PATTERN = "([Yy]es|[Nn]o)"
MIN_OPEN_BYTES = 8  # an open answer with less room than this is no answer: the template is refused

# Which fields each task's output may hold, and which it must hold for a guide.
TASK_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "answer": ({"answer"}, {"answer"}),
    "single": ({"answer", "confidence"}, {"answer", "confidence"}),
    "pairwise": ({"choice", "answer1", "answer2"}, {"choice", "answer1", "answer2"}),
}
_META = set("\\.+*?()|[]{}^$#&-~")


def escape(text: str) -> str:
    """`text` as a regex matching exactly it, in the dialect above."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch in _META:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _refuse(t: Template, why: str) -> ConfigError:
    return ConfigError(f"{t.path or 'template ' + repr(t.name)}: field 'output' cannot be turned into a guide ({why})")


def output_pieces(t: Template, task: str) -> list[tuple[str, str | None]]:
    """The output split into (literal, field) pieces; refuses unknown, repeated or missing fields."""
    allowed, required = TASK_FIELDS[task]
    try:
        parsed = list(string.Formatter().parse(t.output))
    except ValueError as e:
        raise _refuse(t, str(e)) from None
    seen: list[str] = []
    pieces = []
    for literal, name, spec, conversion in parsed:
        if name is not None:
            if name not in allowed:
                raise _refuse(
                    t, f"unknown field {{{name}}} for the {task} task; allowed: " + ", ".join(sorted(allowed))
                )
            if spec or conversion:
                raise _refuse(t, f"field {{{name}}} has a format spec or conversion")
            if name in seen:
                raise _refuse(t, f"field {{{name}}} appears twice")
            seen.append(name)
        pieces.append((literal, name))
    missing = sorted(required - set(seen))
    if missing:
        raise _refuse(t, "missing " + ", ".join("{" + m + "}" for m in missing))
    return pieces


def _numeric_pattern(room: int) -> str:
    """A number of at most `room` bytes: up to 9 integer digits, and up to 3 decimals when there is room."""
    if room >= 8:
        return f"-?[0-9]{{1,{min(9, room - 5)}}}(\\.[0-9]{{1,3}})?"
    return f"-?[0-9]{{1,{room - 1}}}"


def _answer_pattern(q: Question, room: int) -> str:
    if q.answer_type == "mc":
        letters = q.choice_letters()
        if not letters:
            raise ConfigError(f"question {q.id}: a multiple-choice question without options has no guide")
        return "[" + "".join(escape(c) for c in letters) + "]"
    if q.answer_type == "numeric":
        return _numeric_pattern(room)
    if q.answer_type == "boolean":
        return BOOLEAN_PATTERN
    if q.answer_type == "open":
        return f"[A-Za-z0-9][ -~]{{0,{room - 1}}}"
    raise ConfigError(f"question {q.id}: unknown answer_type {q.answer_type!r}")


FIXED_BYTES = {"confidence": 3, "choice": 1}
ANSWER_BYTES = {"mc": 1, "boolean": 3}  # numeric and open answers share the room that is left


def build_guide(t: Template, task: str, answers: dict[str, Question], max_new_tokens: int | None) -> str:
    pieces = output_pieces(t, task)
    limit = max_new_tokens or t.token_limit(guided=True)
    used = sum(len(lit.encode("utf-8")) for lit, _ in pieces)
    flexible = []
    for _, name in pieces:
        if name in FIXED_BYTES:
            used += FIXED_BYTES[name]
        elif name is not None:
            kind = answers[name].answer_type
            if kind in ANSWER_BYTES:
                used += ANSWER_BYTES[kind]
            else:
                flexible.append(name)
    # A reply that can still grow at its end needs one more token for the end-of-sequence.
    budget = limit - used - (0 if pieces[-1][1] is None and pieces[-1][0] else 1)
    room: dict[str, int] = {}
    numeric = [n for n in flexible if answers[n].answer_type == "numeric"]
    opened = [n for n in flexible if n not in numeric]
    for name in numeric:
        room[name] = min(NUMERIC_MAX_BYTES, budget // len(flexible))
    left = budget - sum(room.values())
    for name in opened:
        room[name] = left // len(opened)
    short = [n for n in flexible if room[n] < (MIN_OPEN_BYTES if n in opened else 2)]
    if budget < 0 or short:
        raise _refuse(
            t,
            f"max_new_tokens {limit} is too small: the fixed text and bounded answers need {used} "
            f"tokens, leaving {max(budget, 0)} for the numeric and open answers",
        )
    out = []
    for literal, name in pieces:
        out.append(escape(literal))
        if name == "confidence":
            out.append(CONFIDENCE_PATTERN)
        elif name == "choice":
            out.append(CHOICE_PATTERN)
        elif name is not None:
            out.append(_answer_pattern(answers[name], room.get(name, 0)))
    return "".join(out)


def _template(template: Template | str) -> Template:
    return template if isinstance(template, Template) else load_template(template)


def answer_guide(q: Question, template: Template | str = "answer", max_new_tokens: int | None = None) -> str:
    """The guide of an answer-only reply (the consistency samples); `max_new_tokens` overrides the template's."""
    return build_guide(_template(template), "answer", {"answer": q}, max_new_tokens)


def single_guide(q: Question, template: Template | str = "single") -> str:
    """The guide of a single-task reply: the answer, then the confidence."""
    return build_guide(_template(template), "single", {"answer": q}, None)


def pairwise_guide(q1: Question, q2: Question, template: Template | str = "pairwise") -> str:
    """The guide of a pairwise reply: the choice, then both answers, each by its question's answer type."""
    return build_guide(_template(template), "pairwise", {"answer1": q1, "answer2": q2}, None)


def check_template(template: Template | str, task: str, max_new_tokens: int | None = None) -> None:
    """Refuse (one-line ConfigError) a template whose output cannot be guided, before any sampling starts."""
    t = _template(template)
    probe = {
        kind: Question(
            id=f"probe-{kind}",
            dataset="probe",
            domain="probe",
            question="?",
            choices=["a", "b"] if kind == "mc" else None,
            answers=["a"],
            answer_type=kind,
        )
        for kind in ("mc", "numeric", "open", "boolean")
    }
    for q in probe.values():
        if task == "pairwise":
            pairwise_guide(q, probe["open"], t)
        elif task == "single":
            single_guide(q, t)
        else:
            answer_guide(q, t, max_new_tokens)


FORMATS = ("guided", "free")


def resolve_format(requested: str, engine: Any, stage: str) -> str:
    """The format a stage actually uses: `guided` only where the engine can constrain its output.

    An engine without guided decoding falls back to free sampling with one warning naming the stage, so a run
    on any engine goes through and the run folder says which format each stage used.
    """
    if requested not in FORMATS:
        raise ConfigError(f"{stage}: format must be one of {', '.join(FORMATS)}, got {requested!r}")
    if requested == "guided" and not getattr(engine, "supports_guide", False):
        warnings.warn(
            f"{stage}: the {getattr(engine, 'name', 'engine')} engine cannot guide its output; "
            "sampling free text (format: free)",
            stacklevel=2,
        )
        return "free"
    return requested
