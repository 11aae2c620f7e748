"""Parsers: confidence rule, single / pairwise replies, p_first from log-probabilities, formatter round trips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.questions import boolean, mc, num, open_q
from metaconf.data.schema import Question
from metaconf.engines.types import TokenLogprob
from metaconf.errors import DataError
from metaconf.tasks import (
    choice_probability,
    format_pairwise_target,
    format_single_target,
    parse_confidence,
    parse_pairwise,
    parse_single,
)

MC, NUM, OPEN, BOOL = mc("B"), num("42"), open_q("Paris"), boolean("yes")
FIXTURE = Path(__file__).parent / "fixtures" / "tasks" / "model_outputs.json"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("85", 0.85),
        ("85%", 0.85),
        ("0.85", 0.85),
        ("Confidence: 85/100", 0.85),
        (".85", 0.85),
        ("85 percent", 0.85),
        ("85 per cent", 0.85),
        ("8 out of 10", 0.8),
        ("Confidence: 85.5", 0.855),
        ("1", 0.01),
        ("1.0", 1.0),
        ("0", 0.0),
        ("100", 1.0),
        ("100%", 1.0),
        ("I am 90% sure", 0.9),
        ("Answer: B\nConfidence: 85", 0.85),
        ("Confidence:\n70", 0.7),
        ("confidence level: 0.3", 0.3),
        ("high", 0.8),
        ("very high", 0.9),
        ("Confidence: low", 0.2),
        ("very low", 0.1),
        ("moderate", 0.5),
    ],
)
def test_parse_confidence_reads_documented_forms(text, expected):
    assert parse_confidence(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "150",
        "101%",
        "-5",
        "Confidence: -0.2",
        "70-80",
        "between 60 and 90",
        "5/0",
        "1.5.2e",
        "high or low",
        "Confidence: unsure",
        "2/1",
    ],
)
def test_parse_confidence_refuses_out_of_range_or_ambiguous(text):
    assert parse_confidence(text) is None


def test_parse_confidence_reads_only_the_confidence_line():
    assert parse_confidence("Answer: 42\nConfidence: 60\nAnswer 2: 7") == pytest.approx(0.6)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_confidence_fuzz_never_raises_and_stays_in_range(text):
    value = parse_confidence(text)
    assert value is None or (0.0 <= value <= 1.0 and math.isfinite(value))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789.%/-: Confidenceperct\n", max_size=30))
def test_parse_confidence_fuzz_numeric_alphabet(text):
    value = parse_confidence(text)
    assert value is None or 0.0 <= value <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_parse_single_and_pairwise_never_raise(text):
    s = parse_single(text, MC)
    assert s.parsed == (s.answer is not None and s.confidence is not None)
    p = parse_pairwise(text, NUM, OPEN)
    assert p.choice in (1, 2, None) and (p.p_first is None or 0 <= p.p_first <= 1)


def test_parse_single_reads_answer_and_confidence():
    s = parse_single("Answer: B\nConfidence: 85", MC)
    assert (s.answer, s.confidence, s.correct, s.parsed) == ("B", 0.85, True, True)
    s = parse_single("Answer: 41\nConfidence: 30%", NUM)
    assert (s.answer, s.confidence, s.correct, s.parsed) == ("41", 0.3, False, True)


def test_parse_single_failure_is_recorded_not_guessed():
    no_conf = parse_single("Answer: B", MC)
    assert no_conf.answer == "B" and no_conf.confidence is None and not no_conf.parsed
    unlabelled = parse_single("42 85", NUM)  # an unlabelled number could be the answer: no confidence read
    assert unlabelled.confidence is None and not unlabelled.parsed
    empty = parse_single("", MC)
    assert empty.answer is None and not empty.correct and not empty.parsed


def test_parse_pairwise_reads_choice_and_both_answers():
    p = parse_pairwise("Choice: 2\nAnswer 1: B\nAnswer 2: 42", MC, NUM)
    assert (p.choice, p.answer1, p.answer2, p.correct1, p.correct2, p.parsed) == (2, "B", "42", True, True, True)
    assert p.p_first is None


def test_parse_pairwise_missing_parts_are_not_parsed():
    p = parse_pairwise("Answer 1: B\nAnswer 2: 42", MC, NUM)
    assert p.choice is None and not p.parsed and p.correct1
    p = parse_pairwise("Choice: 1\nAnswer 1: B", MC, NUM)
    assert p.choice == 1 and p.answer2 is None and not p.parsed and not p.correct2
    assert parse_pairwise("Choice: 12", MC, NUM).choice is None
    # an answer line with nothing gradable in it is read as a wrong answer (the reply itself was readable)
    cut = parse_pairwise('Choice: Question 1\nAnswer 1: The answer is "The \nAnswer 2: 42', MC, NUM)
    assert (cut.choice, cut.answer1, cut.correct1, cut.correct2, cut.parsed) == (1, None, False, True, True)


def _lp(token: str, top: dict[str, float]) -> TokenLogprob:
    return TokenLogprob(token=token, logprob=top.get(token, -9.0), top=top)


def test_p_first_renormalises_over_the_choice_tokens():
    tokens = [
        _lp("Choice", {"Choice": -0.1}),
        _lp(":", {":": 0}),
        _lp(" ", {" ": 0}),
        _lp("2", {"2": math.log(0.3), "1": math.log(0.1), "3": math.log(0.6)}),
        _lp("\n", {}),
    ]
    assert choice_probability(tokens) == pytest.approx(0.25)
    p = parse_pairwise("Choice: 2\nAnswer 1: B\nAnswer 2: 42", MC, NUM, logprobs=tokens)
    assert p.p_first == pytest.approx(0.25)


def test_p_first_merges_tokens_with_leading_space_and_adds_the_chosen_token():
    tokens = [_lp("Choice:", {}), TokenLogprob(" 1", math.log(0.5), {" 2": math.log(0.25), "2": math.log(0.25)})]
    assert choice_probability(tokens) == pytest.approx(0.5)


def test_p_first_is_none_without_a_choice_position():
    assert choice_probability(None) is None
    assert choice_probability([_lp("1", {"1": 0.0})]) is None  # a '1' not after "Choice:"
    assert choice_probability([_lp("Choice:", {}), _lp("1", {"x": -1.0, "1": -math.inf})]) is None


@pytest.mark.parametrize("q, answer", [(MC, "C"), (NUM, "42"), (OPEN, "Paris"), (BOOL, "yes")])
@pytest.mark.parametrize("confidence", [0.0, 0.07, 0.5, 0.855, 1.0])
def test_single_target_round_trips_through_the_parser(q, answer, confidence):
    text = format_single_target(answer, confidence, q)
    parsed = parse_single(text, q)
    assert parsed.parsed
    assert parsed.answer == parse_single(f"Answer: {answer}\nConfidence: 1", q).answer
    assert parsed.confidence == pytest.approx(round(confidence * 100) / 100)
    assert text.endswith(f"\nConfidence: {round(confidence * 100)}%")  # v2: a reply never ends on a bare digit


@pytest.mark.parametrize("choice", [1, 2])
def test_pairwise_target_round_trips_through_the_parser(choice):
    text = format_pairwise_target(choice, "B", "42", MC, NUM)
    assert text.startswith(f"Choice: Question {choice}\n")  # v2: never an option letter
    p = parse_pairwise(text, MC, NUM)
    assert (p.choice, p.answer1, p.answer2, p.parsed) == (choice, "B", "42", True)


def test_formatters_reject_bad_targets():
    with pytest.raises(DataError, match="confidence"):
        format_single_target("B", 1.2, MC)
    with pytest.raises(DataError, match="t/mc"):
        format_single_target("B\nConfidence: 5", 0.5, MC)
    with pytest.raises(DataError, match="choice"):
        format_pairwise_target(3, "B", "42", MC, NUM)


# -- real replies of the embedded model (tests/fixtures/tasks/make_model_outputs.py) ---------------------------
def _fixture():
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return {q["id"]: Question.from_dict(q) for q in data["questions"]}, data


@pytest.mark.skipif(not FIXTURE.is_file(), reason="fixture not generated")
def test_parsers_on_real_model_outputs_never_raise_and_agree_with_the_text():
    questions, data = _fixture()
    parsed = 0
    for row in data["single"]:
        s = parse_single(row["text"], questions[row["id"]])
        assert s.confidence is None or 0.0 <= s.confidence <= 1.0
        assert s.parsed == (s.answer is not None and s.confidence is not None)
        if s.confidence is not None:
            assert "onfidence" in row["text"]  # never read from an unlabelled number
        parsed += s.parsed
    for row in data["pairwise"]:
        logprobs = [TokenLogprob(**t) for t in row["logprobs"]]
        p = parse_pairwise(row["text"], questions[row["id1"]], questions[row["id2"]], logprobs=logprobs)
        if p.choice is not None and p.p_first is not None:
            # the sampled choice token had non-zero mass, so p_first is strictly inside (0, 1) or at the edge
            # of the chosen side
            assert (p.choice == 1 and p.p_first > 0) or (p.choice == 2 and p.p_first < 1)
    assert len(data["single"]) >= 24 and len(data["pairwise"]) >= 12
