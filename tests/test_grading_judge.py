"""The Grader interface: RuleGrader and the LLM JudgeGrader, with a scripted engine."""

from __future__ import annotations

import pytest

from helpers.questions import mc, open_q
from metaconf.data.schema import Question
from metaconf.engines.scripted import ScriptedEngine, last_user_content
from metaconf.errors import ConfigError, DataError
from metaconf.grading import Grader, JudgeGrader, RuleGrader, parse_judge_reply


def trivia(*aliases: str, qid: str = "t/1") -> Question:
    return open_q(*aliases, id=qid, dataset="triviaqa", question="Who wrote Hamlet?")


MC = mc("B", ["3", "4", "5"], dataset="mmlu", question="2+2?")


def test_rule_grader_is_a_grader() -> None:
    grader = RuleGrader()
    assert isinstance(grader, Grader)
    assert grader.grade(["Shakespeare", "Marlowe", "Answer: B"], [trivia("Shakespeare")] * 2 + [MC]) == [
        True,
        False,
        True,
    ]


def test_graders_reject_unpaired_lists() -> None:
    with pytest.raises(DataError, match="2 texts for 1 questions"):
        RuleGrader().grade(["a", "b"], [trivia("x")])


def test_judge_decides_open_answers_that_rules_cannot() -> None:
    replies = {"Marlowe": "No.", "The Bard of Avon": "Yes, it matches.", "Bill S.": "incorrect"}

    def script(messages, sample):
        content = last_user_content(messages)
        answer = content.split("Model's answer: ", 1)[1].split("\n", 1)[0]
        return replies[answer]

    engine = ScriptedEngine(script, quiet=True)
    grader = JudgeGrader(engine)
    assert isinstance(grader, Grader)
    texts = ["Marlowe", "The Bard of Avon", "Bill S.", "Shakespeare", "", "Answer: B"]
    questions = [trivia("William Shakespeare", "Shakespeare", qid=f"t/{i}") for i in range(5)] + [MC]
    assert grader.grade(texts, questions) == [False, True, False, True, False, True]
    # asked only about the three answers that are neither empty nor an exact alias, and never about mc
    asked = [last_user_content(m) for m, _ in engine.calls]
    assert len(asked) == 3
    assert all("Accepted gold answers: William Shakespeare; Shakespeare" in a for a in asked)


def test_judge_asks_greedily() -> None:
    seen = []

    class Recording(ScriptedEngine):
        def _generate_batch(self, requests, params):
            seen.append(params)
            return super()._generate_batch(requests, params)

    JudgeGrader(Recording(lambda m, s: "yes", quiet=True)).grade(["Marlowe"], [trivia("Shakespeare")])
    assert seen and seen[0].temperature == 0.0 and seen[0].greedy


def test_judge_can_overrule_a_containment_match() -> None:
    engine = ScriptedEngine(["no"], quiet=True)
    assert JudgeGrader(engine).grade(["Not Shakespeare"], [trivia("Shakespeare")]) == [False]


def test_unparseable_judge_reply_falls_back_to_rules() -> None:
    engine = ScriptedEngine(["maybe?", "hmm"], quiet=True)
    grader = JudgeGrader(engine)
    questions = [trivia("Shakespeare"), trivia("Shakespeare", qid="t/2")]
    assert grader.grade(["It was Shakespeare", "Marlowe"], questions) == [True, False]
    assert grader.unparsed == 2


def test_judge_confidence_line_is_not_shown_to_the_judge() -> None:
    engine = ScriptedEngine(lambda m, s: "yes", quiet=True)
    grader = JudgeGrader(engine)
    grader.grade(["Answer: The Bard\nConfidence: 80"], [trivia("Shakespeare")])
    assert "Confidence" not in last_user_content(engine.calls[0][0])


def test_custom_template_and_missing_placeholder() -> None:
    engine = ScriptedEngine(lambda m, s: "YES", quiet=True)
    grader = JudgeGrader(engine, template="Q={question} G={gold} A={answer}? yes/no")
    assert grader.grade(["Bard"], [trivia("Shakespeare")]) == [True]
    assert last_user_content(engine.calls[0][0]) == "Q=Who wrote Hamlet? G=Shakespeare A=Bard? yes/no"
    with pytest.raises(ConfigError, match="{answer}"):
        JudgeGrader(engine, template="Q={question} G={gold}")


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("yes", True),
        ("Yes.", True),
        ("No", False),
        ("no, it does not", False),
        ("Correct", True),
        ("Incorrect.", False),
        ("The answer is correct.", True),
        ("", None),
        ("I cannot tell", None),
    ],
)
def test_parse_judge_reply(reply: str, verdict: bool | None) -> None:
    assert parse_judge_reply(reply) is verdict
