"""Exports: HF chat JSONL and the hosted fine-tuning format are validated; bad rows are named by line/field."""

from __future__ import annotations

import json

import pytest

from metaconf.errors import DataError
from metaconf.targets import validate_hf_chat, validate_hosted, validate_hosted_file, write_training_set
from metaconf.targets.examples import Example


def good(i: int = 0) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Q{i}?"},
            {"role": "assistant", "content": "Answer: B\nConfidence: 40"},
        ]
    }


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: None,  # system, user, assistant
        lambda r: r["messages"].pop(0),  # no system message
        lambda r: r["messages"].extend([{"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Yes"}]),
        lambda r: r["messages"][2].update(weight=0, name="bot"),  # the hosted format's optional assistant fields
    ],
    ids=["plain", "no-system", "multi-turn", "weight-and-name"],
)
def test_valid_rows_pass_unchanged(edit):
    rows = [good(i) for i in range(10)]  # exactly the hosted minimum
    for row in rows:
        edit(row)
    before = json.dumps(rows)
    validate_hosted(rows)  # raises DataError on a row it rejects
    validate_hf_chat(rows)
    assert json.dumps(rows) == before  # validation only reads


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(extra=1), "hosted.jsonl:4: field 'extra' is not allowed"),
        (lambda r: r.update(messages=[]), "hosted.jsonl:4: field 'messages'"),
        (lambda r: r["messages"][1].update(role="bot"), r"hosted.jsonl:4: messages\[1\].role: 'bot'"),
        (lambda r: r["messages"][2].update(content=5), r"hosted.jsonl:4: messages\[2\].content"),
        (lambda r: r["messages"][2].update(content="  "), r"messages\[2\].content"),
        (lambda r: r["messages"].pop(), "the last message must be the assistant's"),
        (lambda r: r["messages"].append({"role": "system", "content": "x"}), "system message may only come first"),
        (lambda r: r["messages"][1].update(weight=1), r"messages\[1\].weight"),
        (lambda r: r["messages"][1].update(tool="x"), "field 'tool' is not allowed"),
        (lambda r: r["messages"].pop(1), "needs a user message"),
    ],
)
def test_hosted_rejects_bad_rows_naming_line_and_field(mutate, message):
    rows = [good(i) for i in range(12)]
    mutate(rows[3])
    with pytest.raises(DataError, match=message):
        validate_hosted(rows, "hosted.jsonl")


def test_hosted_needs_ten_examples():
    with pytest.raises(DataError, match="at least 10"):
        validate_hosted([good(i) for i in range(9)])


def test_hf_chat_allows_extra_columns_but_not_bad_roles():
    validate_hf_chat([{**good(), "meta": 1}])
    with pytest.raises(DataError, match=r"train.jsonl:1: messages\[0\].role"):
        validate_hf_chat([{"messages": [{"role": "tool", "content": "x"}]}])


def test_validate_hosted_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "hosted.jsonl"
    path.write_text("\n".join(json.dumps(good(i)) for i in range(11)) + "\n{not json\n")
    with pytest.raises(DataError, match="hosted.jsonl:12: invalid JSON"):
        validate_hosted_file(path)
    path.write_text("\n".join(json.dumps(good(i)) for i in range(11)) + "\n")
    assert validate_hosted_file(path) == 11


def _examples(n: int) -> list[Example]:
    out = []
    for i in range(n):
        out.append(
            Example(
                "single",
                good(i)["messages"][1:],
                {
                    "id": f"q{i}",
                    "dataset": "d",
                    "domain": "math" if i % 2 else "trivia",
                    "bin": i % 10,
                    "consistency": (i % 10) / 10,
                    "target": (i % 10) / 10,
                    "modal_correct": i % 3 == 0,
                },
            )
        )
    out.append(
        Example(
            "pairwise",
            good(99)["messages"][1:],
            {
                "id1": "q1",
                "id2": "q2",
                "domain1": "math",
                "domain2": "trivia",
                "dataset1": "d",
                "dataset2": "d",
                "choice": 2,
                "target1": 0.1,
                "target2": 0.9,
                "bin1": 1,
                "bin2": 9,
            },
        )
    )
    return out


def test_write_training_set_writes_both_formats_and_a_card(tmp_path):
    card = write_training_set(tmp_path / "single", "single", _examples(12), calibration_table="| t |")
    folder = tmp_path / "single"
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert len(train) == 13 and set(train[0]) == {"messages"}
    assert validate_hosted_file(folder / "hosted.jsonl") == 13
    assert card == json.loads((folder / "card.json").read_text())
    assert card["n_single"] == 12 and card["n_pairwise"] == 1 and card["pairs_choice_2"] == 1
    assert card["questions_per_domain"] == {"math": 7, "trivia": 7}
    assert sum(card["single_target_histogram"].values()) == 12
    assert card["pairs_across_domain"] == 1
    assert "# Training set `single`" in (folder / "card.md").read_text()
    assert not list(folder.glob(".*tmp"))  # no temporary files left behind


def test_small_set_skips_hosted_export_with_the_reason(tmp_path):
    card = write_training_set(tmp_path / "tiny", "tiny", _examples(3))
    assert card["hosted"].startswith("not written") and not (tmp_path / "tiny" / "hosted.jsonl").exists()
    assert (tmp_path / "tiny" / "train.jsonl").is_file()
