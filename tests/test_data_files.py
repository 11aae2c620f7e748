"""User files through load_dataset's field mapping, and every bad-input case as a one-line DataError."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from metaconf.data import load_dataset
from metaconf.errors import DataError

ROWS = [
    {"qid": "a", "q": "Capital of France?", "opts": ["Berlin", "Paris", "Rome"], "gold": "B"},
    {"qid": "b", "q": "2+2?", "opts": ["3", "4", "5"], "gold": 1},
    {"qid": "c", "q": "Largest planet?", "opts": ["Mars", "Venus", "Jupiter"], "gold": "Jupiter"},
]
MAPPING = dict(question="q", choices="opts", answers="gold", id="qid", answer_type="mc", domain="geo")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_mc(qs):
    assert [q.id for q in qs] == ["quiz/a", "quiz/b", "quiz/c"]
    assert [q.answers for q in qs] == [["B"], ["B"], ["C"]]
    assert qs[0].choices == ["Berlin", "Paris", "Rome"] and {q.domain for q in qs} == {"geo"}
    assert {q.dataset for q in qs} == {"quiz"} and {q.answer_type for q in qs} == {"mc"}


def test_jsonl_letter_index_and_text_gold_all_load_as_letters(tmp_path):
    check_mc(load_dataset(write_jsonl(tmp_path / "quiz.jsonl", ROWS), **MAPPING))


def test_unregistered_name_with_path_reads_the_path(tmp_path):
    write_jsonl(tmp_path / "rows.jsonl", ROWS)
    check_mc(load_dataset("quiz", path=tmp_path / "rows.jsonl", **dict(MAPPING.items())))


def test_json_list(tmp_path):
    (tmp_path / "quiz.json").write_text(json.dumps(ROWS))
    check_mc(load_dataset(str(tmp_path / "quiz.json"), **MAPPING))


def test_csv_with_list_column_and_with_option_columns(tmp_path):
    with (tmp_path / "quiz.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["qid", "q", "opts", "gold"])
        for r in ROWS:
            w.writerow([r["qid"], r["q"], json.dumps(r["opts"]), r["gold"]])
    check_mc(load_dataset(tmp_path / "quiz.csv", **MAPPING))
    with (tmp_path / "wide.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["qid", "q", "A", "B", "C", "gold"])
        for r in ROWS:
            w.writerow([r["qid"], r["q"], *r["opts"], r["gold"]])
    qs = load_dataset(tmp_path / "wide.csv", **{**MAPPING, "choices": ["A", "B", "C"], "dataset": "quiz"})
    check_mc(qs)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r, "gold": str(r["gold"])} for r in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "quiz.parquet")
    check_mc(load_dataset(tmp_path / "quiz.parquet", **MAPPING))


def test_saved_hf_dataset_and_dataset_dict(tmp_path):
    import datasets

    rows = [{**r, "gold": str(r["gold"])} for r in ROWS]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "quiz"))
    check_mc(load_dataset(tmp_path / "quiz", **MAPPING))
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:1]), "test": datasets.Dataset.from_list(rows)})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert len(load_dataset(tmp_path / "dd", **{**MAPPING, "dataset": "quiz"})) == 3  # 'test' by default
    assert len(load_dataset(tmp_path / "dd", split="train", **MAPPING)) == 1
    with pytest.raises(DataError, match="choose a split with split= \\(available: train, test\\)"):
        load_dataset(tmp_path / "dd", split="validation", **MAPPING)


def test_hub_name_failure_is_one_line(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"^hf:x/y: could not load from the Hugging Face hub \(Couldn't reach") as e:
        load_dataset("hf:x/y")
    assert "\n" not in str(e.value)


def test_hub_name_uses_datasets_load_dataset(monkeypatch):
    import datasets

    seen = {}

    def fake(name, split=None):
        seen.update(name=name, split=split)
        return datasets.Dataset.from_list([{"question": "Q?", "answer": "42"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    qs = load_dataset("hf:owner/name", split="test", answer_type="numeric")
    assert seen == {"name": "owner/name", "split": "test"}
    assert qs[0].answers == ["42"] and qs[0].dataset == "name"


def test_defaults_numeric_boolean_open_and_content_hash_ids(tmp_path):
    rows = [{"question": "How many?", "answer": "1,234"}, {"question": "Half?", "answer": 0.5}]
    qs = load_dataset(write_jsonl(tmp_path / "n.jsonl", rows), answer_type="numeric")
    assert [q.answers for q in qs] == [["1234"], ["0.5"]] and qs[0].id.startswith("n/")
    assert qs[0].id == load_dataset(write_jsonl(tmp_path / "n.jsonl", rows[::-1]), answer_type="numeric")[1].id
    rows = [{"question": "Is it?", "label": v} for v in ("Yes", "false", 1, 0.0, True)]
    assert [q.answers for q in load_dataset(write_jsonl(tmp_path / "b.jsonl", rows), answer_type="boolean")] == [
        ["yes"],
        ["no"],
        ["yes"],
        ["no"],
        ["yes"],
    ]
    rows = [
        {"question": "Who?", "answers": ["Ann", "Anne"]},
        {"question": "Who?", "answers": ["Bob"]},
        {"question": "Quote?", "answers": "[sic] it was"},
    ]
    qs = load_dataset(write_jsonl(tmp_path / "o.jsonl", rows))
    assert qs[0].answer_type == "open" and qs[0].answers == ["Ann", "Anne"]
    assert qs[1].id == qs[0].id + "-2"  # identical question text stays distinct
    assert qs[2].answers == ["[sic] it was"]  # looks like a list, is an answer


def test_limit_is_a_seeded_subset_not_the_first_rows(tmp_path):
    rows = [{"id": f"{i:03d}", "question": f"q{i}", "answer": str(i)} for i in range(200)]
    p = write_jsonl(tmp_path / "many.jsonl", rows)
    a = load_dataset(p, limit=20, seed=1)
    assert len(a) == 20 and [q.id for q in a] == sorted(q.id for q in a)
    assert [q.id for q in a] != [f"many/{i:03d}" for i in range(20)]
    assert [q.id for q in load_dataset(p, limit=20, seed=1)] == [q.id for q in a]
    shuffled = write_jsonl(tmp_path / "many2.jsonl", rows[::-1])
    assert [q.id.split("/")[1] for q in load_dataset(shuffled, limit=20, seed=1, dataset="many")] == [
        q.id.split("/")[1] for q in a
    ]


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mmlu_pr' \\(registered: mmlu_pro"):
        load_dataset("mmlu_pr")
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_dataset(tmp_path / "x.txt")


def test_malformed_rows_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n{"question": "c", "answer": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        load_dataset(p)
    p.write_text('{"question": "a", "answer": "b"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: expected a JSON object"):
        load_dataset(p)
    c = tmp_path / "bad.csv"
    c.write_text("question,answer\nq1,a1\nq2,a2,extra\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: expected 2 columns"):
        load_dataset(c)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable parquet file"):
        load_dataset(tmp_path / "bad.parquet")


def test_missing_mapped_column_names_field_and_column(tmp_path):
    p = write_jsonl(
        tmp_path / "quiz.jsonl", [{"q": "x", "gold": "A", "opts": ["a", "b"]}, {"q": "y", "opts": ["a", "b"]}]
    )
    with pytest.raises(DataError, match=r"quiz\.jsonl:2: column 'gold' \(mapped to answers\) not found"):
        load_dataset(p, question="q", answers="gold", choices="opts")
    with pytest.raises(DataError, match=r"quiz\.jsonl:1: column 'prompt' \(mapped to question\) not found"):
        load_dataset(p, question="prompt", answers="gold", choices="opts")
    with pytest.raises(DataError, match="no question column \\(tried question"):
        load_dataset(p, answers="gold")


def test_bad_gold_and_mapping_values(tmp_path):
    rows = [{"question": "x", "choices": ["1", "2", "0"], "answer": "2"}]
    with pytest.raises(DataError, match=r"'2' is both option B's text and index 2; give the letter"):
        load_dataset(write_jsonl(tmp_path / "amb.jsonl", rows))
    rows = [{"question": "x", "choices": ["a", "b"], "answer": 5}]
    with pytest.raises(DataError, match=r"amb2\.jsonl:1: answer index 5 is out of range for 2 options"):
        load_dataset(write_jsonl(tmp_path / "amb2.jsonl", rows))
    rows = [{"question": "x", "choices": ["a", "b"], "answer": "zebra"}]
    with pytest.raises(DataError, match=r"is not a letter A-B, a 0-based index or one of the options"):
        load_dataset(write_jsonl(tmp_path / "amb3.jsonl", rows))
    rows = [{"question": "x", "answer": "many"}]
    with pytest.raises(DataError, match=r"num\.jsonl:1: numeric answer 'many' is not a number"):
        load_dataset(write_jsonl(tmp_path / "num.jsonl", rows), answer_type="numeric")
    with pytest.raises(DataError, match="answer_type must be one of"):
        load_dataset(tmp_path / "num.jsonl", answer_type="essay")
    with pytest.raises(DataError, match="unknown field mapping 'colour'"):
        load_dataset(tmp_path / "num.jsonl", colour="red")
    with pytest.raises(DataError, match="answer_type 'mc' needs choices="):
        load_dataset(tmp_path / "num.jsonl", answer_type="mc")
    with pytest.raises(DataError, match="field mappings \\(question\\) apply only to user files"):
        load_dataset("gsm8k", question="q")


def test_empty_results_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty.jsonl: no rows"):
        load_dataset(tmp_path / "empty.jsonl")
    p = write_jsonl(tmp_path / "one.jsonl", [{"question": "x", "answer": "y"}])
    with pytest.raises(DataError, match="limit=0 leaves no questions"):
        load_dataset(p, limit=0)
    p = write_jsonl(tmp_path / "blank.jsonl", [{"question": "  ", "answer": "y"}])
    with pytest.raises(DataError, match=r"blank\.jsonl:1: empty question"):
        load_dataset(p)
    p = write_jsonl(
        tmp_path / "dup.jsonl", [{"id": 1, "question": "x", "answer": "y"}, {"id": 1, "question": "z", "answer": "y"}]
    )
    with pytest.raises(DataError, match="duplicate question id 'dup/1'"):
        load_dataset(p)
