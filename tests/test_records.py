"""Typed run records (metaconf.records): what the writers write validates and comes back byte for byte, and a bad
row is one line naming the file, the line and the field."""

import json

import pytest
from tests.helpers.questions import mc, num

from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import DataError
from metaconf.evaluation.stage import evaluate_pairwise, evaluate_single
from metaconf.io import write_jsonl
from metaconf.metrics import summarize, write_metrics
from metaconf.metrics.items import PairItem, SingleItem, pairwise_items, single_items
from metaconf.records import (
    BaselinePrediction,
    ConsistencyRecord,
    Metrics,
    PairPrediction,
    SinglePrediction,
    read_consistency,
    read_metrics,
    read_predictions,
    read_run_predictions,
)
from metaconf.targets.consistency import consistency_record


def _reply(messages, sample_index):
    text = messages[-1]["content"]
    if "Choice:" in text:
        return "Choice: 2\nAnswer 1: B\nAnswer 2: 12"
    return "Answer: B\nConfidence: 80" if sample_index == 0 else "no idea"


QUESTIONS = [mc(id="t/1"), mc(id="t/2", answer="C"), num(id="t/3", answer="12")]


def _bytes(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def test_written_predictions_read_back_typed_and_byte_identical(tmp_path):
    engine = ScriptedEngine(_reply, quiet=True)
    single = evaluate_single(engine, "base", QUESTIONS)
    pairs = evaluate_pairwise(engine, "base", [(QUESTIONS[0], QUESTIONS[2])], {"t/1": 0.5, "t/3": 1.0})
    write_jsonl(tmp_path / "predictions" / "base__single__t.jsonl", single)
    write_jsonl(tmp_path / "predictions" / "base__pairwise__t.jsonl", pairs)

    found = read_run_predictions(tmp_path)
    info = {"t": {"domain": "general", "in_domain": True}}  # the metrics take typed rows as they take dicts
    as_dicts = {("base", "single", "t"): single, ("base", "pairwise", "t"): pairs}
    assert summarize(found, info, n_boot=20) == summarize(dict(reversed(as_dicts.items())), info, n_boot=20)
    assert list(found) == [("base", "pairwise", "t"), ("base", "single", "t")]
    read_single, read_pairs = found[("base", "single", "t")], found[("base", "pairwise", "t")]
    assert all(isinstance(r, SinglePrediction) for r in read_single)
    assert [r.correct for r in read_single] == [True, False, False] and read_single[0].confidence == 0.8
    assert isinstance(read_pairs[0], PairPrediction) and read_pairs[0].choice == 2
    # to_row() is the writer's dict, key order included, so a rewrite gives the same bytes
    for path, rows in (
        (tmp_path / "predictions" / "base__single__t.jsonl", read_single),
        (tmp_path / "predictions" / "base__pairwise__t.jsonl", read_pairs),
    ):
        assert _bytes(r.to_row() for r in rows) == path.read_text()


def test_optional_and_extra_fields_stay_as_given():
    row = {"id": "a", "dataset": "d", "confidence": 1, "correct": True, "parsed": True, "note": "kept"}
    record = SinglePrediction.model_validate(row)
    assert record.to_row() == row and record.task == "single"  # a default is not written unless given
    assert type(record.to_row()["confidence"]) is int  # checked, not rewritten as 1.0
    record.confidence_expected = 0.75  # set after construction (as a guided evaluation does): then written
    assert list(record.to_row()) == ["id", "dataset", "confidence", "correct", "parsed", "confidence_expected", "note"]
    baseline = {"id": "a", "dataset": "d", "domain": "x", "method": "p_true", "answer": "B", "confidence": None}
    baseline |= {"correct": False, "parsed": False}
    assert BaselinePrediction.model_validate(baseline).to_row() == baseline


def test_consistency_records_round_trip(tmp_path):
    record = consistency_record(QUESTIONS[0], ["Answer: B", "Answer: B", "Answer: C", "nothing"])
    assert isinstance(record, ConsistencyRecord)  # the targets stage builds the typed record itself
    write_jsonl(tmp_path / "eval.jsonl", [record.to_row()])
    (read,) = read_consistency(tmp_path / "eval.jsonl")
    assert read.consistency == 0.5 and read.modal_answer == "B" and read.parse_rate == 0.75
    assert _bytes([read.to_row()]) == (tmp_path / "eval.jsonl").read_text()
    assert ConsistencyRecord(**{**record.to_row(), "meta": {}}).to_row() == record.to_row()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            '{"id": "x", "dataset": "t", "correct": "yes", "parsed": true}',
            "field 'correct': expected true/false, got 'yes'",
        ),
        ('{"id": "x", "dataset": "t", "correct": true}', "field 'parsed': missing"),
        (
            '{"id": "x", "dataset": "t", "correct": true, "parsed": true, "confidence": 1.5}',
            "field 'confidence': expected a number in [0, 1]",
        ),
        (
            '{"id": ["x"], "dataset": "t", "correct": true, "parsed": true}',
            "field 'id': Input should be a valid string",
        ),
        ('["not", "an", "object"]', "expected a JSON object"),
    ],
)
def test_a_bad_prediction_row_names_file_line_and_field(tmp_path, line, problem):
    path = tmp_path / "base__single__t.jsonl"
    good = '{"id": "a", "dataset": "t", "confidence": 0.5, "correct": false, "parsed": true}'
    path.write_text(f"{good}\n{good}\n{line}\n")
    with pytest.raises(DataError) as err:
        read_predictions(path)
    message = str(err.value)
    assert message.startswith(f"{path}:3: ") and problem in message and "\n" not in message


def test_a_badly_named_prediction_file_is_refused(tmp_path):
    for name in ("base__t.jsonl", "base__triple__t.jsonl"):
        (tmp_path / name).write_text("")
        with pytest.raises(DataError, match=rf"{name}: "):
            read_predictions(tmp_path / name)


def test_pairwise_choice_is_read_as_1_or_2():
    row = {"id1": "a", "id2": "b", "dataset": "t", "correct1": 1, "correct2": 0, "parsed": True}
    assert PairPrediction.model_validate({**row, "choice": "first"}).choice == 1
    assert PairPrediction.model_validate({**row, "choice": " Q2 "}).choice == 2
    with pytest.raises(DataError, match=r"row 1: field 'choice': expected 1 or 2 \(or null\), got 3"):
        pairwise_items([{**row, "choice": 3}], ("base", "pairwise", "t"))


def test_metric_inputs_are_named_columns():
    rows = [
        {"id": "a", "dataset": "t", "confidence": 0.9, "correct": True, "parsed": True},
        {"id": "b", "dataset": "t", "confidence": None, "correct": False, "parsed": False},
    ]
    items = single_items(rows, ("base", "single", "t"))
    assert items[("t", "a")] == SingleItem(confidence=0.9, correct=1.0, parsed=1.0, has_confidence=1.0)
    assert items[("t", "b")].has_confidence == 0.0 and items[("t", "b")].confidence == 0.0
    pair = {"id1": "a", "id2": "b", "dataset": "t", "choice": None, "correct1": True, "correct2": False}
    (item,) = pairwise_items([{**pair, "parsed": False, "p_first": 0.25}], ("base", "pairwise", "t")).values()
    assert isinstance(item, PairItem) and (item.has_choice, item.p_first, item.has_p_first) == (0.0, 0.25, 1.0)


def test_metrics_json_reads_back_through_its_model(tmp_path):
    rows = [
        {"id": f"t/{i}", "dataset": "t", "confidence": 0.2 + 0.1 * i, "correct": i % 2 == 0, "parsed": True}
        for i in range(6)
    ]
    summary = summarize(
        {("base", "single", "t"): rows, ("single", "single", "t"): rows},
        {"t": {"domain": "x", "in_domain": True}},
        n_boot=20,
    )
    path = write_metrics(tmp_path / "metrics.json", summary)
    metrics = read_metrics(path)
    assert isinstance(metrics, Metrics) and metrics.rows[0].condition == "base"
    assert metrics.comparisons[0].reference == "base" and metrics.comparisons[0].pooled is False
    assert metrics.rows[0].model_extra["ece"] == summary["rows"][0]["ece"]  # metric values: extra keys in order
    assert json.dumps(metrics.to_row(), indent=2) == json.dumps(json.loads(path.read_text()), indent=2)

    broken = json.loads(path.read_text())
    del broken["rows"][1]["condition"]
    path.write_text(json.dumps(broken))
    with pytest.raises(DataError, match=r"metrics\.json: field 'rows\.1\.condition': missing"):
        read_metrics(path)
    with pytest.raises(DataError, match="metrics.json: missing"):
        read_metrics(tmp_path / "nowhere" / "metrics.json")
