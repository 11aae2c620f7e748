"""grading in the study config: rules by default, an LLM judge when chosen (here a scripted engine judges)."""

from __future__ import annotations

import pytest

from helpers.questions import open_q
from helpers.study import SMALL
from metaconf.engines.scripted import ScriptedEngine, last_user_content
from metaconf.errors import ConfigError
from metaconf.evaluation import evaluate_pairwise, evaluate_single
from metaconf.grading import DEFAULT_JUDGE_TEMPLATE, JudgeGrader
from metaconf.study.config import parse_config
from metaconf.study.runner import Study
from metaconf.tasks.sampling import Sampling

HAMLET = open_q("William Shakespeare", id="t/1", dataset="triviaqa", question="Who wrote Hamlet?")
ODYSSEY = open_q("Homer", id="t/2", dataset="triviaqa", question="Who wrote the Odyssey?")


def model(messages, sample):
    """The model under study: a paraphrase of the right answer (no alias matches it) for both tasks."""
    if "Choice:" in last_user_content(messages):
        return "Choice: 1\nAnswer 1: The Bard of Avon\nAnswer 2: Virgil"
    return "Answer: The Bard of Avon\nConfidence: 80"


def judge(messages, sample):
    """The judge: yes for the paraphrase of Shakespeare, no for anything else."""
    return "yes" if "Model's answer: The Bard of Avon" in last_user_content(messages) else "no"


def test_grading_defaults_to_rules_and_judge_is_selectable():
    assert parse_config(SMALL).grading.method == "rule"
    config = parse_config({**SMALL, "grading": {"method": "judge", "max_new_tokens": 4}})
    assert (config.grading.method, config.grading.judge_model, config.grading.max_new_tokens) == ("judge", None, 4)
    judged = parse_config({**SMALL, "grading": {"method": "judge", "judge_model": {"engine": "hf", "name": "m"}}})
    assert judged.grading.judge_model.name == "m"


def test_grading_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"field 'grading\.method'"):
        parse_config({**SMALL, "grading": {"method": "vibes"}})
    with pytest.raises(ConfigError, match=r"field 'grading'.*method 'judge' only"):
        parse_config({**SMALL, "grading": {"template": "{question} {gold} {answer}"}})
    with pytest.raises(ConfigError, match=r"field 'grading'.*missing the \{gold\}, \{answer\} placeholder"):
        parse_config({**SMALL, "grading": {"method": "judge", "template": "Q: {question}"}})
    with pytest.raises(ConfigError, match=r"field 'grading\.judge_model\.options\.bogus'"):
        parse_config(
            {
                **SMALL,
                "grading": {"method": "judge", "judge_model": {"engine": "hf", "name": "m", "options": {"bogus": 1}}},
            }
        )


def test_study_builds_a_judge_on_the_base_model_only_when_asked(tmp_path):
    class JudgedStudy(Study):
        def engine(self, condition="base"):
            return ScriptedEngine(judge, name=f"judge-{condition}", quiet=True)

    assert JudgedStudy(parse_config(SMALL), tmp_path / "a", quiet=True).grader() is None
    config = parse_config({**SMALL, "grading": {"method": "judge", "max_new_tokens": 4}})
    grader = JudgedStudy(config, tmp_path / "b", quiet=True).grader()
    assert isinstance(grader, JudgeGrader)
    assert (grader.engine.name, grader.template, grader.max_new_tokens) == ("judge-base", DEFAULT_JUDGE_TEMPLATE, 4)


def test_judge_grades_the_evaluated_answers_of_both_tasks():
    engine = ScriptedEngine(model, quiet=True)
    grader = JudgeGrader(ScriptedEngine(judge, quiet=True))
    ruled = evaluate_single(engine, "base", [HAMLET])
    judged = evaluate_single(engine, "base", [HAMLET], Sampling(grader=grader))
    assert (ruled[0]["correct"], judged[0]["correct"]) == (False, True)  # the rules miss the paraphrase
    assert judged[0]["answer"] == ruled[0]["answer"] and judged[0]["confidence"] == 0.8
    pair = evaluate_pairwise(engine, "base", [(HAMLET, ODYSSEY)], {}, Sampling(grader=grader))[0]
    assert (pair["correct1"], pair["correct2"], pair["choice"]) == (True, False, 1)
    assert evaluate_pairwise(engine, "base", [(HAMLET, ODYSSEY)], {}, Sampling())[0]["correct1"] is False
