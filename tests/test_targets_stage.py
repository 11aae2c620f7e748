"""build_data end to end with a scripted engine: files, cache reuse on rerun, determinism; the CLI's errors."""

from __future__ import annotations

import json

import pytest

from helpers.questions import mc, num
from metaconf.cli import main
from metaconf.data.schema import Question
from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import DataError
from metaconf.targets import CalibrationMap, TargetsConfig, TrainingSetSpec, build_data, read_jsonl
from metaconf.targets.stage import consistency_summary
from metaconf.tasks import parse_pairwise, parse_single


def questions() -> list[Question]:
    qs = []
    for i in range(8):
        qs.append(mc("B", ["p", "q", "r", "s"], id=f"mc/{i}", dataset="mmlu_pro", question=f"Pick option {i}?"))
        qs.append(num(str(i + 1), id=f"num/{i}", dataset="gsm8k", question=f"What is {i} + 1?"))
    return qs


def script(messages, sample: int) -> str:
    """Deterministic answers whose agreement varies with the question: some consistent and right, some not."""
    text = messages[-1]["content"]
    i = int(text.split("?")[0].split()[-1 if "Pick" in text else -3])
    if "Pick" in text:
        return "Answer: B" if sample < 3 + i else f"Answer: {'ACD'[sample % 3]}"
    if sample == 9:
        return "I do not know"  # an unparseable sample
    return f"Answer: {i + 1}" if sample < i + 2 else f"Answer: {i + 7 + sample % 2}"


def test_build_data_writes_the_run_folder(tmp_path):
    engine = ScriptedEngine(script)
    summary = build_data(tmp_path, engine, questions(), TargetsConfig(min_bin_count=2))
    records = read_jsonl(tmp_path / "consistency" / "train.jsonl")
    assert len(records) == 16 and all(len(r["samples"]) == 10 for r in records)
    by_id = {r["id"]: r for r in records}
    assert by_id["mc/7"]["consistency"] == 1.0 and by_id["mc/7"]["modal_correct"]
    assert by_id["num/0"]["answers"][9] is None and by_id["num/0"]["modal_answer"] in ("7", "8")
    cmap = CalibrationMap.from_json((tmp_path / "calibration_map.json").read_text())
    assert sum(cmap.pooled.count) == 16
    assert set(json.loads((tmp_path / "templates.json").read_text())) == {"answer", "single", "pairwise"}
    qmap = {q.id: q for q in questions()}
    for cond in ("single", "pairwise", "multitask"):
        folder = tmp_path / "training_sets" / cond
        assert {p.name for p in folder.iterdir()} >= {"train.jsonl", "hosted.jsonl", "card.md", "card.json"}
        assert summary["sets"][cond]["n_examples"] == len(read_jsonl(folder / "train.jsonl"))
    for row, meta in zip(
        read_jsonl(tmp_path / "training_sets/single/train.jsonl"),
        read_jsonl(tmp_path / "training_sets/single/examples.jsonl"),
    ):
        assert parse_single(row["messages"][-1]["content"], qmap[meta["id"]]).parsed
    for row, meta in zip(
        read_jsonl(tmp_path / "training_sets/pairwise/train.jsonl"),
        read_jsonl(tmp_path / "training_sets/pairwise/examples.jsonl"),
    ):
        assert parse_pairwise(row["messages"][-1]["content"], qmap[meta["id1"]], qmap[meta["id2"]]).parsed
    assert summary["consistency"]["all"]["n"] == 16
    assert summary["consistency"]["gsm8k"]["parse_rate"] == pytest.approx(0.9)


def test_rerun_reuses_cached_samples_and_is_deterministic(tmp_path):
    store = tmp_path / "run" / "completions.sqlite"
    build_data(tmp_path / "run", ScriptedEngine(script, store=store), questions())
    first = (tmp_path / "run" / "training_sets" / "multitask" / "train.jsonl").read_text()
    again = ScriptedEngine(script, store=store)
    build_data(tmp_path / "run", again, questions())
    assert again.calls == []  # every sample came from RUN/completions.sqlite
    assert (tmp_path / "run" / "training_sets" / "multitask" / "train.jsonl").read_text() == first
    build_data(tmp_path / "other", ScriptedEngine(script), questions())
    assert (tmp_path / "other" / "training_sets" / "multitask" / "train.jsonl").read_text() == first


def test_custom_sets_and_sample_count(tmp_path):
    config = TargetsConfig(n_samples=4, sets=[TrainingSetSpec(name="math_only", task="single", domains=["math"])])
    engine = ScriptedEngine(script)
    summary = build_data(tmp_path, engine, questions(), config)
    assert len(engine.calls) == 16 * 4
    assert list(summary["sets"]) == ["math_only"]
    assert summary["sets"]["math_only"]["questions_per_domain"] == {"math": 8}


def test_build_data_refuses_bad_questions(tmp_path):
    with pytest.raises(DataError, match="duplicate id 'mc/0'"):
        build_data(tmp_path, ScriptedEngine(script), questions() + questions()[:1])
    with pytest.raises(DataError, match="none given"):
        build_data(tmp_path, ScriptedEngine(script), [])


def test_consistency_summary_per_dataset():
    from metaconf.targets import ConsistencyRecord

    rs = [
        ConsistencyRecord(
            id="a",
            dataset="x",
            domain="d",
            answer_type="mc",
            samples=["", ""],
            answers=["A", None],
            modal_answer="A",
            modal_text="A",
            consistency=0.5,
            modal_correct=True,
        ),
        ConsistencyRecord(
            id="b",
            dataset="y",
            domain="d",
            answer_type="mc",
            samples=["", ""],
            answers=[None, None],
            modal_answer=None,
            modal_text=None,
            consistency=0.0,
            modal_correct=False,
        ),
    ]
    s = consistency_summary(rs)
    assert s["all"] == {"n": 2, "parse_rate": 0.25, "modal_parsed": 0.5, "accuracy": 0.5, "mean_consistency": 0.25}
    assert s["x"]["parse_rate"] == 0.5


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    bad = tmp_path / "targets.yaml"
    bad.write_text("targets:\n  n_bins: 0\n")
    assert main(["build-data", "--out", str(tmp_path / "run"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "targets.yaml: field 'targets.n_bins': Input should be greater" in err
    bad.write_text("n_bins: 0\n")  # metaconf 0.1's layout: TargetsConfig fields at the top level
    assert main(["build-data", "--out", str(tmp_path / "run"), "--config", str(bad)]) == 2
    deprecation, error = capsys.readouterr().err.strip().splitlines()
    assert "put them under 'targets:'" in deprecation and "field 'targets.n_bins'" in error
    assert main(["build-data", "--out", str(tmp_path / "run"), "--targets.n_bins", "0"]) == 2
    assert "--targets.n_bins: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert main(["build-data", "--out", str(tmp_path / "run"), "--held_out", "0.2"]) == 2  # a count now
    assert "--held_out: Input should be a valid integer" in capsys.readouterr().err
    assert main(["build-data", "--out", str(tmp_path / "run"), "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml: no such config file" in capsys.readouterr().err


def test_a_set_without_examples_writes_only_its_card(tmp_path):
    def always_wrong(messages, sample):  # every answer consistent and wrong: all targets equal, no pair
        return "Answer: D" if "Pick" in messages[-1]["content"] else "Answer: 999"

    (tmp_path / "training_sets" / "pairwise").mkdir(parents=True)
    (tmp_path / "training_sets" / "pairwise" / "train.jsonl").write_text("stale\n")
    summary = build_data(tmp_path, ScriptedEngine(always_wrong), questions())
    card = summary["sets"]["pairwise"]
    assert card["n_examples"] == 0 and "pair_gap" in card["empty"]
    folder = tmp_path / "training_sets" / "pairwise"
    assert not (folder / "train.jsonl").exists() and "Empty" in (folder / "card.md").read_text()
    assert summary["sets"]["single"]["n_examples"] == 16
