"""One Task per reply format: the parser is derived from the template's `output`, like the guide."""

from __future__ import annotations

import re

import pytest

from helpers.questions import mc, num
from metaconf.errors import ConfigError
from metaconf.tasks.task import Tasks, get_task
from metaconf.tasks.templates import load_template, parse_template

MC, NUM = mc("B", ["x", "y", "z"]), num("42")


def test_the_bundled_labels_are_read_as_the_old_hand_written_ones():
    single, pairwise = get_task("single").parser.labels, get_task("pairwise").parser.labels
    assert single["answer"].find.pattern == r"\banswer\s*[:=]"
    assert single["confidence"].find.pattern == r"\bconfidence(?:\s+(?:level|score))?\s*(?:[:=]|is\b|-)?"
    assert single["confidence"].at_end.pattern == r"\bconfidence\s*[:=]\s*$"
    assert pairwise["answer2"].find.pattern == r"\banswer\s*2\s*[:=]"
    assert pairwise["choice"].find.pattern == r"\bchoice\s*[:=]?\s*(?:question\s*)?#?\s*([12])(?![0-9]|\.[0-9])"


def _custom(output: str, user: str = "{question}"):
    raw = load_template("single").record() | {"name": "custom", "output": output, "question": None}
    raw["user"] = dict.fromkeys(("mc", "numeric", "open", "boolean"), user)
    return get_task("single", parse_template({k: v for k, v in raw.items() if v is not None}, "custom.yaml"))


def test_a_custom_output_is_parsed_by_its_own_labels_and_round_trips():
    task = _custom("Reply: {answer} | sure: {confidence}/100")
    parsed = task.parse("Reply: 42 | sure: 70/100", NUM)
    assert (parsed.answer, parsed.confidence, parsed.correct, parsed.parsed) == ("42", 0.7, True, True)
    assert task.parse("REPLY:   b  |  SURE: 15/100", MC).answer == "B"  # any case and spacing
    assert task.parse("Answer: 42\nConfidence: 70%", NUM).confidence is None  # the bundled labels mean nothing here
    text = task.format_target("B", 0.31, MC)
    assert text == "Reply: B | sure: 31/100" and re.fullmatch(task.guide(MC), text)
    assert task.parse(text, MC).confidence == pytest.approx(0.31)


def test_a_pairwise_output_with_other_labels():
    raw = load_template("pairwise").record() | {"output": "Pick {choice}\nFirst = {answer1}\nSecond = {answer2}"}
    task = get_task("pairwise", parse_template(raw, "p.yaml"))
    parsed = task.parse("pick 2\nfirst = B\nsecond = 41", MC, NUM)
    assert (parsed.choice, parsed.answer1, parsed.correct1, parsed.correct2, parsed.parsed) == (
        2,
        "B",
        True,
        False,
        True,
    )
    assert task.parse("Choice: 1\nAnswer 1: B\nAnswer 2: 42", MC, NUM).parsed is False


def test_the_study_picks_its_templates_once():
    tasks = Tasks.of()
    assert [t.name for t in (tasks.answer, tasks.single, tasks.pairwise, tasks.p_true)] == [
        "answer",
        "single",
        "pairwise",
        "p_true",
    ]
    assert Tasks.of().single is tasks.single  # built once per template
    with pytest.raises(ConfigError, match="unknown field"):
        _custom("Reply: {answer} {certainty}")
