"""Hostile model output: the grader and the parsers never raise, read bounded text, and take linear time.

Model text is untrusted and a server may ignore max_tokens. The speed test compares two sizes in one run (no
wall-clock limit): linear work grows 8x for 8x the text, quadratic work 64x.
"""

from __future__ import annotations

import time

import pytest

import metaconf.grading.normalize as normalize
from helpers.questions import boolean, mc, num, open_q
from metaconf import grading
from metaconf.tasks import parsing

MC, NUM, OPEN, BOOL = mc("B"), num("1234"), open_q("Paris"), boolean("yes")

# (model text, question, extracted answer expected, correct expected)
CASES = [
    ("\\frac{1}{" + "1" * 5000 + "}", NUM, None, False),  # was ValueError: Exceeds the limit (4300 digits)
    ("1" * 4300 + "e30", NUM, None, False),  # was ValueError in canonical_number
    ("1" * 5000, NUM, None, False),
    ("The answer is " + "9" * 99 + "/" + "7" * 99, NUM, "9/7", False),  # long but exact: read
    ("\\frac{0}{0}, so the answer is 1234", NUM, "1234", True),
    ("answer is " * 3000 + "1234", NUM, "1234", True),  # was quadratic (a rescan after every cue)
    ("\n" * 20_000 + "Answer: B\nConfidence: 80", MC, "B", True),  # was quadratic (the Confidence-line cut)
    ("answer: a x " * 2000 + "\nAnswer: B", MC, "B", True),
    ("Answer: " * 3000 + "Paris", OPEN, "paris", True),  # was quadratic (prefix stripping)
    ("<think>" + "1 " * 40_000 + "</think>Answer: 1234", NUM, "1234", True),  # the think block is dropped
    ("x" * (normalize.MAX_TEXT_CHARS + 10) + " 1234", NUM, None, False),  # beyond the bound: not read
    ("yes " * 100_000, BOOL, "yes", True),
]


@pytest.mark.parametrize("text,question,answer,correct", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_hostile_output_gives_a_value_never_an_exception(text, question, answer, correct):
    assert grading.extract_answer(text, question) == answer
    assert grading.is_correct(text, question) is correct
    grading.answer_matches(text, question)  # never raises
    single = parsing.parse_single(text, question)
    assert single.confidence is None or 0.0 <= single.confidence <= 1.0
    parsing.parse_pairwise(text, question, question)


def test_parsers_read_huge_numbers_as_no_number():
    assert parsing.parse_confidence("Confidence: " + "9" * 5000) is None
    assert parsing.parse_confidence("Confidence: 1/" + "0" * 5000) is None
    assert parsing.parse_confidence("Confidence: 85%") == 0.85
    assert grading.parse_number("1" * 5000) is None
    assert grading.answer_matches("1" * 4300 + "e30", NUM) is False


# Strings built by repeating a unit: each aims at one place where a parser could rescan the text.
HOSTILE_UNITS = [
    "answer is ",
    "Answer: ",
    "answer: a x ",
    "Answer 1: ",
    "Choice: ",
    "confidence: ",
    "Confidence: 85%\n",
    "\n",
    " ",
    "1",
    "1,",
    "1.",
    "1/",
    "\\frac{1}{1",
    "\\frac{1}{2} ",
    "90% confident ",
    "(A) ",
    "B is correct ",
    "option ",
    "\\boxed{",
    "####",
    "<think>",
    "yes not ",
    "twelve ",
    "=",
    "[",
]
READERS = {
    "mc": lambda t: grading.is_correct(t, MC),
    "numeric": lambda t: grading.is_correct(t, NUM),
    "open": lambda t: grading.is_correct(t, OPEN),
    "boolean": lambda t: grading.is_correct(t, BOOL),
    "answer_matches": lambda t: grading.answer_matches(t, NUM),
    "parse_confidence": parsing.parse_confidence,
    "parse_single": lambda t: parsing.parse_single(t, NUM),
    "parse_pairwise": lambda t: parsing.parse_pairwise(t, MC, NUM),
}


def _seconds(text: str) -> float:
    """CPU time of every reader on `text` (best of two, to damp a busy machine)."""
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        for read in READERS.values():
            read(text)
        best = min(best, time.process_time() - start)
    return max(best, 1e-4)


def _growth(unit: str, small: int, big: int) -> float:
    return _seconds((unit * (big // len(unit) + 1))[:big]) / _seconds((unit * (small // len(unit) + 1))[:small])


@pytest.mark.parametrize("unit", HOSTILE_UNITS)
def test_readers_on_1mb_hostile_text_do_not_grow_superlinearly(unit):
    """As shipped (reading at most MAX_TEXT_CHARS): 1 MB costs about what 128 KB does."""
    growth = _growth(unit, 125_000, 1_000_000)
    assert growth < 24, f"{unit!r}: 8x the text took {growth:.0f}x the time"


@pytest.mark.slow
@pytest.mark.parametrize("unit", HOSTILE_UNITS)
def test_readers_are_linear_without_the_bound(unit, monkeypatch):
    """The algorithms themselves are linear: with the bound lifted, 8x the text costs about 8x (not 64x)."""
    monkeypatch.setattr(normalize, "MAX_TEXT_CHARS", 10**9)
    growth = _growth(unit, 16_000, 128_000)
    assert growth < 24, f"{unit!r}: 8x the text took {growth:.0f}x the time"
