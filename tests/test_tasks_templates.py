"""Prompt templates: YAML data, instructions first / question last, validation errors that name the field."""

from __future__ import annotations

import pytest

from helpers.questions import boolean, mc, num, open_q
from metaconf.errors import ConfigError
from metaconf.tasks import (
    answer_messages,
    generation_settings,
    load_template,
    pairwise_messages,
    single_messages,
    template_record,
)
from metaconf.tasks.templates import parse_template

MC = mc("B", ["Stone", "Apple", "Car"], question="Which is a fruit?")
NUM, OPEN, BOOL = num("42", question="What is 6 * 7?"), open_q("Paris"), boolean("yes")


@pytest.mark.parametrize("name", ["answer", "single", "pairwise"])
def test_bundled_templates_load_with_settings(name):
    t = load_template(name)
    assert t.name == name and t.version >= 1 and t.description
    settings = generation_settings(name)
    assert settings["max_new_tokens"] == t.max_new_tokens > 0
    assert settings["stop"] == list(t.stop)


@pytest.mark.parametrize("build", [answer_messages, single_messages])
@pytest.mark.parametrize("q", [MC, NUM, OPEN, BOOL])
def test_single_question_prompts_put_instructions_first_and_question_last(build, q):
    messages = build(q)
    assert [m["role"] for m in messages] == ["user"]
    text = messages[0]["content"]
    assert text.index("Question: ") > 0  # the fixed instructions come first
    assert text.rstrip().endswith(q.question if q.choices is None else "C. Car")
    if q.choices:
        assert "A. Stone\nB. Apple\nC. Car" in text


def test_prompts_of_one_task_share_a_prefix():
    a, b = (
        single_messages(MC)[0]["content"],
        single_messages(mc("A", ["Red", "Dog"], question="Name a colour."))[0]["content"],
    )
    shared = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    assert a[:shared].endswith("Question: ")


def test_pairwise_prompt_renders_both_questions_in_order():
    text = pairwise_messages(MC, NUM)[0]["content"]
    assert text.index("Question 1: Which is a fruit?") < text.index("Question 2: What is 6 * 7?")
    assert "(answer with the option letter)" in text and "(answer with a number)" in text
    assert text.index("Choice") < text.index("Question 1")


def test_template_record_holds_name_version_and_text():
    record = template_record()
    assert set(record) == {"answer", "single", "pairwise"}
    assert record["single"]["version"] == load_template("single").version
    assert "{question}" in record["single"]["user"]["mc"]
    assert "Confidence" in record["single"]["output"]


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ConfigError, match="not found"):
        load_template("no_such_template")


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"version": 1, "user": {}, "output": "x", "max_new_tokens": 4}, "name"),
        ({"name": "x", "version": 1, "user": {"mc": "a"}, "output": "x", "max_new_tokens": 4}, "numeric"),
        ({"name": "x", "version": 1, "user": "u", "output": "x", "max_new_tokens": 4}, "question"),
        (
            {
                "name": "x",
                "version": 1,
                "user": "u",
                "question": {"mc": "", "numeric": "", "open": "", "boolean": ""},
                "output": "x",
                "max_new_tokens": 0,
            },
            "max_new_tokens",
        ),
        ({"name": "x", "version": 1, "oops": 1}, "oops"),
    ],
)
def test_invalid_template_names_file_and_field(raw, field):
    with pytest.raises(ConfigError, match=field) as info:
        parse_template(raw, "bad.yaml")
    assert str(info.value).startswith("bad.yaml")


def test_template_loaded_from_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nversion: 3\nmax_new_tokens: 5\noutput: 'A: {answer}'\nsystem: Be brief.\n"
        "user: {mc: 'Q {question} {choices}', numeric: 'Q {question}', open: 'Q {question}', boolean: 'Q {question}'}\n"
    )
    messages = answer_messages(NUM, template=str(path))
    assert messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q What is 6 * 7?"}]


PAIR_QUESTION = {"mc": "Q {question}", "numeric": "Q {question}", "open": "Q {question}", "boolean": "Q {question}"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": "1"}, "field 'version': Input should be a valid integer"),
        ({"max_new_tokens": True}, "field 'max_new_tokens': Input should be a valid integer"),
        ({"stop": ["\n", ""]}, "field 'stop.1': String should have at least 1 character"),
        ({"guided_max_new_tokens": 0}, "field 'guided_max_new_tokens': Input should be greater than 0"),
        ({"user": 5}, "field 'user': must map answer types"),
        ({"question": {**PAIR_QUESTION, "essay": "x"}}, "field 'question': needs text for -; unknown essay"),
    ],
)
def test_template_fields_are_typed_and_errors_name_file_and_field(change, message):
    raw = {
        "name": "p",
        "version": 1,
        "user": "{question1} / {question2}",
        "question": PAIR_QUESTION,
        "output": "Choice: {choice}",
        "max_new_tokens": 8,
        **change,
    }
    with pytest.raises(ConfigError) as info:
        parse_template(raw, "bad.yaml")
    assert str(info.value).startswith(f"bad.yaml: {message}")


def test_template_model_documents_every_field_and_keeps_its_file():
    from metaconf.tasks.templates import Template

    assert all(f.description for f in Template.model_fields.values())
    t = parse_template(
        {
            "name": "p",
            "version": 1,
            "user": "{question1} / {question2}",
            "question": PAIR_QUESTION,
            "output": "x",
            "max_new_tokens": 8,
            "stop": None,
        },
        "mine.yaml",
    )
    assert (t.path, t.stop, t.generation(guided=True)) == ("mine.yaml", (), {"max_new_tokens": 8, "stop": []})
