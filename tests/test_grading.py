"""Answer extraction and grading rules, per answer type (docs/grading.md)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.questions import boolean, mc, num, open_q
from metaconf.data.schema import Question
from metaconf.errors import DataError
from metaconf.grading import (
    answer_matches,
    answer_region,
    canonical_number,
    extract_answer,
    is_correct,
    normalize_open,
    parse_number,
)


# ------------------------------------------------------------------------------------------ multiple choice
@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", "B"),
        ("b", "B"),
        ("Answer: B", "B"),
        ("answer: b", "B"),
        ("(b)", "B"),
        ("(B) protons", "B"),
        ("B. protons", "B"),
        ("B) protons", "B"),
        ("B: protons", "B"),
        ("B - protons", "B"),
        ("The answer is B", "B"),
        ("The answer is B.", "B"),
        ("The correct answer is (C).", "C"),
        ("The correct option is D because photons...", "D"),
        ("The best choice would be C", "C"),
        ("**B**", "B"),
        ("**Answer: C**", "C"),
        ("protons", "B"),
        ("Protons.", "B"),
        ("The particle is the proton, i.e. protons", "B"),
        ("B because protons carry a positive charge.", "B"),
        ("B\nProtons have a positive charge.", "B"),
        ("A. electrons", "A"),
        ("A) electrons", "A"),
        ("(a)", "A"),
        ("a.", "A"),
        ("A", "A"),
        ("Answer: A", "A"),
        ("The answer is A.", "A"),
        ("A is correct.", "A"),
        ("A is the correct answer", "A"),
        ("Answer: B\nConfidence: 80", "B"),
        ("Answer: B\nConfidence: 80\nAnswer: C", "B"),
        ("Answer: B, confidence: 0.8", "B"),
        ("I think the answer is C.", "C"),
        ("Let's think. Electrons are negative. So the answer is B.", "B"),
        ("Option B is correct.", "B"),
        ("After considering, I choose option C.", "C"),
        ("Answer:\nD", "D"),
        ("[C]", "C"),
        ("The answer is B. Option A is wrong because electrons are negative.", "B"),
        ("The solution we are seeking is C.", "C"),
        ("Answer 1: D", "D"),
        ("1. B. This answer coincides with D. photons", "B"),
        ("I think D is the correct answer because the answer C is answer 2.", "D"),
        ("B. protons\nA. electrons", "B"),  # two of four options: a first answer, not an echo of the list
        ("Answer: C. photons\n\nCorrect option: [B]", "C"),
        ("The correct option is D. 12.\nMy answer is: 12", "D"),
        ("B. protons\n\nThe answer is: C. neutrons.", "C"),
    ],
)
def test_mc_extraction(text: str, expected: str) -> None:
    assert extract_answer(text, mc()) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A proton is a positively charged particle.",
        "A particle with positive charge is called a cation.",
        "a positively charged particle",
        "I don't know.",
        "I think it is positive.",
        "The answer is a particle in the nucleus.",
        "",
        "   ",
        "Confidence: 80",
        "e.g. something else",
        "E",  # not one of the four options
        "A. electrons\nB. protons\nC. neutrons\nD. photons",  # the model echoed the options
        "A. electrons\nB. protons\nC. neutrons",
    ],
)
def test_mc_no_answer(text: str) -> None:
    assert extract_answer(text, mc()) is None


def test_mc_article_not_read_even_when_option_a_is_gold() -> None:
    q = mc("A")
    assert extract_answer("A particle that orbits the nucleus.", q) is None
    assert not is_correct("A particle that orbits the nucleus.", q)


def test_mc_article_followed_by_option_a_text_reads_a() -> None:
    q = mc("A", ["Proton", "Neutron", "Electron", "Photon"])
    assert extract_answer("A proton", q) == "A"
    assert extract_answer("A. Proton is the answer", q) == "A"


def test_mc_ten_options_letter_i() -> None:
    q = mc("I", [f"option {k}" for k in range(10)])
    assert extract_answer("I think the answer is J.", q) == "J"
    assert extract_answer("I", q) == "I"
    assert extract_answer("(I) option 8", q) == "I"
    assert extract_answer("I don't know", q) is None
    assert is_correct("Answer: I", q)


def test_mc_option_text_contained_in_another_picks_the_longer() -> None:
    q = mc("B", ["Paris", "Paris, Texas", "London", "Rome"])
    assert extract_answer("It is Paris, Texas.", q) == "B"


@pytest.mark.parametrize("text, correct", [("Answer: B", True), ("(c)", False), ("protons", True), ("??", False)])
def test_mc_is_correct(text: str, correct: bool) -> None:
    assert is_correct(text, mc("B")) is correct


def test_mc_multiple_gold_letters() -> None:
    q = mc("B")
    q.answers = ["B", "D"]
    assert is_correct("D", q) and is_correct("B", q) and not is_correct("A.", q)


# -------------------------------------------------------------------------------------------------- numeric
@pytest.mark.parametrize(
    "text, expected",
    [
        ("#### 1,234", "1234"),
        ("She pays 3 * 4 = 12 dollars.\n#### 12", "12"),
        ("$1,234.00", "1234"),
        ("1234 dollars", "1234"),
        ("x = 12", "12"),
        ("The answer is 12.", "12"),
        ("The answer is 12. Because 3 * 4 = 12 and 12 + 1 = 13", "12"),
        ("First 3 + 4 = 7, then 7 * 2 = 14. So she has 14 apples.", "14"),
        ("Answer: 5 + 7 = 12", "12"),
        ("3/4", "0.75"),
        ("0.75", "0.75"),
        ("\\frac{3}{4}", "0.75"),
        ("The answer is $\\boxed{42}$. Check: 40 + 2", "42"),
        ("-5", "-5"),
        ("The temperature is \u22127 degrees", "-7"),
        ("x = -3", "-3"),
        ("The answer is 25%", "25"),
        ("75 percent", "75"),
        ("It takes 3-5 days; the answer is 4", "4"),
        ("1.50", "1.5"),
        ("0.3333", "0.3333"),
        ("1/3", "1/3"),
        ("1e3", "1000"),
        ("Answer: 12\nConfidence: 90", "12"),
        ("Answer: 12, confidence: 90%", "12"),
        ("I'd say 12. I am 90% confident.", "12"),
        ("The answer is twelve.", "12"),
        ("twelve", "12"),
        ("Answer: 100\n\nExplanation: 10 * 10", "100"),
        ("-0.50", "-0.5"),
        ("Answer 2: 12", "12"),  # metaconf's pairwise format: the 2 is a label
        ("007", "7"),
    ],
)
def test_numeric_extraction(text: str, expected: str) -> None:
    assert extract_answer(text, num()) == expected


@pytest.mark.parametrize("text", ["", "I don't know", "Confidence: 90", "one of them is red", "3/0"])
def test_numeric_no_answer(text: str) -> None:
    assert extract_answer(text, num()) is None


@pytest.mark.parametrize(
    "gold, text, correct",
    [
        ("1234", "#### 1,234", True),
        ("1234", "$1,234.00", True),
        ("0.75", "3/4", True),
        ("3/4", "0.75", True),
        ("-3", "x = -3", True),
        ("3", "x = -3", False),
        ("25", "25%", True),
        ("18", "The answer is 18.0", True),
        ("18", "The answer is 17", False),
        ("1/3", "0.3333333333", True),
        ("1/3", "0.33", False),
        ("1,000", "1000", True),
        ("$5", "5", True),
    ],
)
def test_numeric_is_correct(gold: str, text: str, correct: bool) -> None:
    assert is_correct(text, num(gold)) is correct


@pytest.mark.parametrize(
    "value, text",
    [
        (Fraction(1234), "1234"),
        (Fraction(3, 4), "0.75"),
        (Fraction(-1, 2), "-0.5"),
        (Fraction(1, 3), "1/3"),
        (Fraction(1, 8), "0.125"),
        (Fraction(0), "0"),
        (Fraction(-7, 3), "-7/3"),
        (Fraction(5, 100), "0.05"),
    ],
)
def test_canonical_number(value: Fraction, text: str) -> None:
    assert canonical_number(value) == text
    assert parse_number(text) == value


# ----------------------------------------------------------------------------------------------- open-ended
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Paris", "paris"),
        ("Answer: The Eiffel Tower.", "eiffel tower"),
        ("The answer is: Paris!", "paris"),
        ("  Paris\nIt is the capital of France.", "paris"),
        ("Answer:\nParis", "paris"),
        ("Pelé", "pele"),
        ("A Tale of Two Cities", "tale of two cities"),
        ("Paris\nConfidence: 80", "paris"),
        ("**Paris**", "paris"),
        ("", None),
        ("...", None),
    ],
)
def test_open_extraction(text: str, expected: str | None) -> None:
    assert extract_answer(text, open_q()) == expected


@pytest.mark.parametrize(
    "aliases, text, correct",
    [
        (["Paris"], "Paris", True),
        (["Paris"], "paris.", True),
        (["Paris"], "The capital of France is Paris.", True),
        (["Paris"], "Answer: Paris\nConfidence: 90", True),
        (["Paris"], "London", False),
        (["Paris"], "Parisian", False),  # whole words only
        (["Paris"], "Paris is the capital and most populous city of France, with an estimated population", False),
        (["The Beatles", "Beatles"], "the beatles", True),
        (["J. R. R. Tolkien", "Tolkien"], "It was written by J.R.R. Tolkien.", True),
        (["1969"], "In 1969.", True),
        (["United States", "USA"], "U.S.A.", False),  # punctuation removal leaves "u s a"
        (["Paris"], "", False),
        (["Paris"], "Answer: London\nParis", False),  # only the first line counts
    ],
)
def test_open_is_correct(aliases: list[str], text: str, correct: bool) -> None:
    assert is_correct(text, open_q(*aliases)) is correct


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Cat!", "cat"),
        ("an  apple", "apple"),
        ("Théâtre_du Soleil", "theatre du soleil"),
        ("A.B.C.", "b c"),
        ("  many   spaces ", "many spaces"),
        ("the", ""),
    ],
)
def test_normalize_open(text: str, expected: str) -> None:
    assert normalize_open(text) == expected
    assert normalize_open(normalize_open(text)) == normalize_open(text)


# -------------------------------------------------------------------------------------------------- boolean
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", "yes"),
        ("no.", "no"),
        ("No, it is not allowed.", "no"),
        ("Yes. The contract is valid.", "yes"),
        ("True", "yes"),
        ("false", "no"),
        ("Answer: No\nConfidence: 70", "no"),
        ("Answer 2: yes", "yes"),
        ("I think the answer is yes.", "yes"),
        ("That is not true.", "no"),
        ("It is not false.", "yes"),
        ("**Yes**", "yes"),
        ("The answer is no, although yes could be argued", "no"),
        ("I don't know", None),
        ("", None),
        ("Confidence: yes", None),
        ("Nobody knows", None),
    ],
)
def test_boolean_extraction(text: str, expected: str | None) -> None:
    assert extract_answer(text, boolean()) == expected


@pytest.mark.parametrize(
    "gold, text, correct",
    [("yes", "Yes", True), ("Yes", "true", True), ("no", "yes", False), ("False", "No.", True), ("no", "", False)],
)
def test_boolean_is_correct(gold: str, text: str, correct: bool) -> None:
    assert is_correct(text, boolean(gold)) is correct


# ------------------------------------------------------------------------------------------- answer_matches
@pytest.mark.parametrize(
    "answer, question, matches",
    [
        ("B", mc("B"), True),
        ("b", mc("B"), True),
        ("C", mc("B"), False),
        ("protons", mc("B"), True),
        (None, mc("B"), False),
        ("0.75", num("3/4"), True),
        ("12", num("12.0"), True),
        ("13", num("12"), False),
        ("paris", open_q("Paris"), True),
        ("london", open_q("Paris"), False),
        ("yes", boolean("Yes"), True),
        ("no", boolean("yes"), False),
    ],
)
def test_answer_matches(answer: str | None, question: Question, matches: bool) -> None:
    assert answer_matches(answer, question) is matches


@pytest.mark.parametrize("question", [mc("C"), num("-2.5"), open_q("Mount Everest", "Everest"), boolean("no")])
@pytest.mark.parametrize("text", ["Answer: C", "The answer is -2.5", "Mount Everest", "No", "x"])
def test_extracted_answer_matches_iff_is_correct(question: Question, text: str) -> None:
    assert answer_matches(extract_answer(text, question), question) == is_correct(text, question)


def test_answer_region_cuts_confidence_and_markdown() -> None:
    assert answer_region("**Answer: B**\nConfidence: 80%") == "Answer: B"
    assert answer_region("<think>maybe A</think>Answer: C") == "Answer: C"
    assert answer_region("Answer: B\n  confidence level is 7") == "Answer: B"


def test_unknown_answer_type_is_a_data_error() -> None:
    q = Question("t/x", "t", "d", "q", None, ["1"], "essay")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="t/x"):
        extract_answer("text", q)


# ------------------------------------------------------------------------------------------------ fuzzing
QUESTIONS = [mc("B"), mc("I", [f"o{k}" for k in range(10)]), num("12"), open_q("Paris"), boolean("yes")]
fuzz_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "Answer:",
                "A",
                "a",
                "(b)",
                "####",
                "1,234",
                "-",
                "/",
                "0",
                "3/0",
                "\\frac{1}{0}",
                "%",
                "\\boxed{",
                "}",
                "\n",
                "Confidence:",
                "yes",
                "not",
                "e",
                "1e99999",
                ".",
                "$",
                " ",
                "**",
            ]
        ),
        max_size=40,
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(text=fuzz_text, which=st.integers(min_value=0, max_value=len(QUESTIONS) - 1))
def test_extract_never_raises(text: str, which: int) -> None:
    q = QUESTIONS[which]
    answer = extract_answer(text, q)
    assert answer is None or isinstance(answer, str)
    assert isinstance(is_correct(text, q), bool)
    if answer is not None and q.answer_type != "open":
        assert extract_answer(answer, q) == answer  # an extracted answer, a canonical number too, reads as itself
