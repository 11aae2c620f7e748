"""The registered loaders on the real benchmark files in <repo>/../shared/data (skipped when absent)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from metaconf.data import load_dataset
from metaconf.data.legalbench import EXCLUDED_TASKS, TEST_DIR
from metaconf.data.sources import shuffle_choices
from metaconf.errors import DataError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present")


def full(name: str, split: str | None = None, **kw):
    folder = {"truthfulqa_gen": "truthfulqa"}.get(name, name)
    return load_dataset(name, split=split, path=DATA / folder, **kw)


def test_mmlu_pro_gold_letters_match_answer_index():
    import json

    qs = full("mmlu_pro", "validation")
    raw = {r["question_id"]: r for r in json.loads((DATA / "mmlu_pro/mmlu_pro_val_data.json").read_text())}
    assert len(qs) == 70
    for q in qs:
        r = raw[int(q.id.split("/")[1])]
        assert q.answers == ["ABCDEFGHIJ"[r["answer_index"]]]
        assert q.choices == [o.strip() for o in r["options"]] and q.domain == "general"
    assert all(not c.startswith(" ") for q in full("mmlu_pro", limit=200) for c in q.choices)


def test_mmlu_reads_all_subjects_and_splits():
    dev = full("mmlu", "dev")
    assert len(dev) == 285 and len({q.meta["subject"] for q in dev}) == 57
    q = next(q for q in dev if q.id == "mmlu/dev/abstract_algebra/0")
    assert len(q.choices) == 4 and q.answers[0] in "ABCD" and q.answer_type == "mc"


def test_gsm8k_gold_is_the_number_after_hashes_without_commas():
    qs = full("gsm8k")
    assert qs[0].answers == ["18"] and qs[0].answer_type == "numeric" and qs[0].domain == "math"
    golds = [q.answers[0] for q in qs]
    assert "2125" in golds and not any("," in g for g in golds)


def test_triviaqa_parses_csv_quoted_alias_lists():
    qs = full("triviaqa", "dev")
    assert len(qs) == 8837
    quoted = [q for q in full("triviaqa") if q.question.startswith("In which decade did stereo records")]
    assert "'30s" in quoted[0].answers and "1930s" in quoted[0].answers
    assert all(q.answer_type == "open" and q.domain == "trivia" and q.answers for q in qs)


def test_truthfulqa_mc1_shuffled_deterministically_with_correct_gold():
    import json

    qs = full("truthfulqa")
    raw = {r["question"]: r["mc1_targets"] for r in json.loads((DATA / "truthfulqa/mc_task.json").read_text())}
    letters = Counter()
    for q in qs:
        correct = next(k for k, v in raw[q.question].items() if v == 1)
        assert q.choices[ord(q.answers[0]) - 65] == correct.strip()
        assert q.choices == shuffle_choices(q.question, list(raw[q.question]))
        letters[q.answers[0]] += 1
    assert letters["A"] < 0.5 * len(qs)  # upstream lists the correct answer first; shuffling must move it
    assert [q.choices for q in full("truthfulqa")] == [q.choices for q in qs]


def test_truthfulqa_gen_answers_include_best_answer_and_aliases():
    qs = full("truthfulqa_gen")
    q = next(q for q in qs if q.question == "What happens to you if you eat watermelon seeds?")
    assert q.answers[0] == "The watermelon seeds pass through your digestive system"
    assert "Nothing happens" in q.answers and "You get sick" in q.meta["incorrect_answers"]
    assert len(full("truthfulqa_gen", "test_817")) == 817  # BOM-prefixed original file


def test_metamedqa_six_options_gold_from_target_and_kind_kept():
    qs = full("metamedqa")
    kinds = Counter(q.meta["kind"] for q in qs)
    assert kinds["Fictional"] == 100 and kinds["Original"] == 1097
    assert all(len(q.choices) == 6 for q in qs)
    odd = [q.id for q in qs if q.choices[5] != "I don't know or cannot answer"]
    assert odd == ["metamedqa/1198"]  # the upstream quirk (option F = "AR"), kept as published
    assert all(q.answers == ["F"] for q in qs if q.meta["kind"] in ("Fictional", "Bad"))
    assert {q.domain for q in qs} == {"medical"}


def test_medqa_four_options():
    qs = full("medqa")
    assert len(qs) == 1273 and qs[0].answers == ["B"] and qs[0].id == "medqa/0"
    assert all(len(q.choices) == 4 for q in qs)


def test_legalbench_types_tasks_and_labels():
    qs = full("legalbench")
    tasks = Counter(q.meta["task"] for q in qs)
    assert len(tasks) == 52 and not set(EXCLUDED_TASKS) & set(tasks)
    assert tasks["overruling"] == 2394
    for q in qs:
        if q.answer_type == "boolean":
            assert q.answers in (["yes"], ["no"]) and q.choices is None
        elif q.answer_type == "mc":
            assert q.choices == sorted(q.choices) and q.answers[0] in "ABCDE"
        else:
            assert q.meta["task"] == "statutory_reasoning_assessment" and q.answers[0].isdigit()
    aber = [q for q in qs if q.meta["task"] == "abercrombie"]
    assert aber[0].choices == ["arbitrary", "descriptive", "fanciful", "generic", "suggestive"]
    assert aber[0].answers == ["D"]  # the first row is 'generic'
    assert Counter(q.answer_type for q in qs)["numeric"] == 20
    assert not any("\x92" in q.question for q in qs)  # cp1252 punctuation repaired


def test_ids_are_stable_and_unique_across_loads():
    a, b = full("medqa", limit=50, seed=3), full("medqa", limit=50, seed=3)
    assert [q.id for q in a] == [q.id for q in b] == sorted(q.id for q in a)
    assert [q.id for q in full("medqa", limit=50, seed=4)] != [q.id for q in a]


def test_env_data_dir_selects_full_files(monkeypatch):
    monkeypatch.setenv("METACONF_DATA_DIR", str(DATA))
    assert len(load_dataset("mmlu_pro", split="validation")) == 70


def copy_dataset(tmp_path: Path, folder: str) -> Path:
    dst = tmp_path / folder
    shutil.copytree(DATA / folder, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_malformed_gsm8k_line_names_file_and_line(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    (d / "test.jsonl").write_text(
        '{"question": "1+1?", "answer": "2\\n#### 2"}\n{"question": "x", "answer": "no final"}\n'
    )
    with pytest.raises(DataError, match=r"test\.jsonl:2: 'answer' has no '#### <number>'"):
        load_dataset("gsm8k", path=d)


def test_malformed_triviaqa_line_names_file_and_line(tmp_path):
    d = tmp_path / "triviaqa"
    d.mkdir()
    (d / "topics.dpr.trivia.test.txt").write_text("Q1?\t['a']\nQ2?\t__import__('os')\n")
    with pytest.raises(DataError, match=r"trivia\.test\.txt:2: answers column is not a Python list literal"):
        load_dataset("triviaqa", path=d)


def test_legalbench_bad_label_names_file_and_line(tmp_path):
    d = copy_dataset(tmp_path, f"legalbench/{TEST_DIR}/hearsay").parents[1]
    tsv = d / TEST_DIR / "hearsay" / "test.tsv"
    tsv.write_text(tsv.read_text().replace("No\t", "Maybe\t", 1))
    with pytest.raises(DataError, match=r"hearsay/test\.tsv:2: label 'Maybe' is not Yes/No"):
        load_dataset("legalbench", path=d)


def test_missing_file_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match="mmlu_pro_test_data.json: file not found"):
        load_dataset("mmlu_pro", path=tmp_path)
    with pytest.raises(DataError, match="unknown split 'train'"):
        load_dataset("medqa", split="train", path=DATA / "medqa")
    with pytest.raises(DataError, match="data folder for medqa not found"):
        load_dataset("medqa", path=tmp_path / "nope")
