"""Text normalisation shared by the extractors: the answer region, open-answer normalisation, numbers.

Everything here is pure string work on untrusted model output: nothing is ever evaluated.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from fractions import Fraction

# Where the answer part of a response ends: a "Confidence" line (metaconf's own format), or an inline
# "confidence: 80" / "confidence level is 80" after the answer on the same line.
_CONFIDENCE_CUT = re.compile(
    r"(?im)^(?:[^\S\n]|[*_#>\-])*confidence\b|\bconfidence(?:\s+(?:level|score))?\s*(?:[:=]|is\b)"
)
_MARKDOWN = re.compile(r"\*\*|__|`")


# Model text is untrusted and a server may ignore max_tokens: every reader looks at most at this many characters
# (after a closed <think> block), so a hostile reply costs bounded time.
MAX_TEXT_CHARS = 32_000
# A number with more digits is no answer (and Python refuses int <-> str conversions past 4,300 digits).
MAX_DIGITS = 100


def bounded_text(text: object) -> str:
    """The text a grader or parser reads: without a closed `<think>...</think>` block, at most MAX_TEXT_CHARS."""
    text = text if isinstance(text, str) else str(text)
    end = text.lower().rfind("</think>")
    if end >= 0:
        text = text[end + len("</think>") :]
    return text[:MAX_TEXT_CHARS]


def answer_region(text: str) -> str:
    """The part of a response that holds the answer: before any "Confidence:" line, without markdown emphasis.

    A closed `<think>...</think>` block is dropped, so reasoning models are graded on their final answer.
    """
    text = bounded_text(text)
    match = _CONFIDENCE_CUT.search(text)
    if match:
        text = text[: match.start()]
    return _MARKDOWN.sub("", text).strip()


# ---------------------------------------------------------------------------------------------- open answers
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in "$+<=>^`|~"


def normalize_open(text: str) -> str:
    """SQuAD / TriviaQA answer normalisation: lowercase, strip accents and punctuation, drop the articles
    a/an/the, collapse whitespace. Idempotent."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.lower().replace("_", " ")
    text = "".join(" " if _is_punctuation(ch) else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------------- numbers
_MINUS = "-\u2212\u2013"  # hyphen-minus, the minus sign, the en dash models sometimes write
_NUMBER = re.compile(
    rf"(?P<sign>[{_MINUS}]\s?)?(?P<cur>[$\u20ac\u00a3]\s?)?"
    r"(?<![\w.,/])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?)(?![\d.]))?"
    r"(?P<exp>[eE][+-]?\d+)?"
    r"(?P<pct>\s?%|\s?percent\b)?"
)
_LATEX_FRAC = re.compile(r"(?P<sign>-)?\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}")

_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)


def _match_value(text: str, m: re.Match) -> tuple[int, Fraction] | None:
    """(start, value) of one number match, or None (e.g. a zero denominator). A sign counts as a minus only
    where it cannot be a hyphen between two things ("3-5", "COVID-19")."""
    start = m.start()
    negative = False
    if m.group("sign"):
        before = text[m.start() - 1] if m.start() > 0 else " "
        if before.isalnum() or before in ").]":
            start = m.start("cur") if m.group("cur") else m.start("num")
        else:
            negative = True
    if len(m.group("num")) > MAX_DIGITS or len(m.group("den") or "") > MAX_DIGITS:
        return None
    try:
        value = Fraction(m.group("num").replace(",", ""))
        if m.group("exp"):
            power = int(m.group("exp")[1:])
            if abs(power) > 30:
                return None
            value *= Fraction(10) ** power
        if m.group("den") is not None:
            den = Fraction(m.group("den"))
            if den == 0:
                return None
            value /= den
    except (ValueError, ZeroDivisionError):
        return None
    return start, (-value if negative else value)


def find_numbers(text: str) -> list[tuple[int, int, Fraction]]:
    """Every number in `text` as (start, end, value): integers, 1,234 thousands, decimals, a/b fractions,
    \\frac{a}{b}, 1e3, $ amounts, percentages (read as the number shown: "75%" is 75), minus signs."""
    found: list[tuple[int, int, Fraction]] = []
    taken: list[tuple[int, int]] = []
    for m in _LATEX_FRAC.finditer(text):
        taken.append((m.start(), m.end()))  # its digits are never read as separate numbers
        if len(m.group(2)) > MAX_DIGITS or len(m.group(3)) > MAX_DIGITS:
            continue
        den = Fraction(m.group(3))
        if den != 0:
            value = Fraction(m.group(2)) / den
            found.append((m.start(), m.end(), -value if m.group("sign") else value))
    starts = [s for s, _ in taken]  # sorted, non-overlapping
    for m in _NUMBER.finditer(text):
        k = bisect.bisect_right(starts, m.start("num")) - 1
        if k >= 0 and m.start("num") < taken[k][1]:
            continue
        parsed = _match_value(text, m)
        if parsed is not None:
            found.append((parsed[0], m.end(), parsed[1]))
    found.sort(key=lambda t: t[0])
    return found


def find_number_words(text: str) -> list[tuple[int, int, Fraction]]:
    """Single number words ("twelve", "forty") as (start, end, value); a fallback when no digits appear."""
    return [(m.start(), m.end(), Fraction(_WORDS[m.group(1).lower()])) for m in _NUMBER_WORD.finditer(text)]


def parse_number(text: str) -> Fraction | None:
    """The value of a string that is one number (gold answers, already extracted answers), else None."""
    text = str(text).strip().rstrip(".")
    numbers = find_numbers(text)
    if len(numbers) == 1:
        start, end, value = numbers[0]
        rest = (text[:start] + text[end:]).strip()
        if not rest or re.fullmatch(r"[A-Za-z$€£\s.]*", rest):  # units and currency around the number are fine
            return value
    words = find_number_words(text)
    if not numbers and len(words) == 1 and words[0][0] == 0 and words[0][1] == len(text):
        return words[0][2]
    return None


def canonical_number(value: Fraction) -> str:
    """One string per value: integers plainly ("1234", "-5"), terminating decimals without trailing zeros
    ("0.75", so 3/4 and 0.75 agree), other fractions as "p/q" ("1/3")."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value) * 10**places
    digits = str(scaled.numerator).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return ("-" if value < 0 else "") + text


def numbers_equal(a: Fraction, b: Fraction, rel_tol: float = 1e-6) -> bool:
    """Exact rational equality, or within a relative tolerance (so 0.333333333 == 1/3 but 0.33 != 1/3)."""
    if a == b:
        return True
    return abs(a - b) <= Fraction(rel_tol) * max(Fraction(1), abs(b))
