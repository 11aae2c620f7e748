"""`metaconf ask` / `metaconf.ask`: a run's condition answers through the run's engine, template and store."""

from __future__ import annotations

import json

import pytest

import metaconf
from helpers.study import SMALL, ScriptedStudy, scripted_answer, scripted_run
from metaconf.baselines import apply_map
from metaconf.cli import main
from metaconf.engines.scripted import ScriptedEngine
from metaconf.io import read_json, read_jsonl
from metaconf.study.config import parse_config
from metaconf.study.runner import Study


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return scripted_run(tmp_path_factory.mktemp("ask"))


def scripted(run, condition="base"):
    return ScriptedEngine(scripted_answer, store=run / "completions.sqlite", name=f"scripted-{condition}", quiet=True)


def test_ask_answers_a_stored_question_from_the_store(run_dir):
    study = ScriptedStudy(parse_config({**SMALL, "conditions": ["base"]}), run_dir, quiet=True)
    study.stage_data()
    q = study.eval_sets["gsm8k"][0]
    stored = next(r for r in read_jsonl(run_dir / "predictions" / "base__single__gsm8k.jsonl") if r["id"] == q.id)
    engine = scripted(run_dir)
    (result,) = metaconf.ask(run_dir, "base", [q], engine=engine)
    assert isinstance(result, metaconf.AskResult)
    assert result.raw == stored["raw"] and result.confidence == stored["confidence"] == 0.7
    assert result.answer == "12" and result.correct == stored["correct"]
    assert engine.calls == []  # the evaluation's completion, read back from the run's store


def test_ask_free_text_and_calibrated(run_dir):
    (plain,) = metaconf.ask(run_dir, "base", "How many legs has a spider?", engine=scripted(run_dir))
    assert plain.answer == "12" and plain.confidence == 0.7 and plain.correct is None
    (cal,) = metaconf.ask(run_dir, "base", "How many legs has a spider?", calibrated=True, engine=scripted(run_dir))
    isotonic = read_json(run_dir / "baselines" / "recalibration.json")["maps"]["base"]["isotonic"]
    assert cal.confidence == pytest.approx(apply_map(isotonic, 0.7)) and cal.stated_confidence == 0.7
    assert cal.calibration == "isotonic"


def test_cli_json_file_and_errors(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Study, "engine", ScriptedStudy.engine)
    assert main(["ask", "--run", str(run_dir), "--condition", "base", "--json", "What is 5 + 7?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"answer", "confidence"} and out["answer"] == "12" and 0 <= out["confidence"] <= 1

    assert main(["ask", "--run", str(run_dir), "--condition", "base", "What is 5 + 7?"]) == 0
    assert capsys.readouterr().out == "Answer: 12\nConfidence: 70%\n"

    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"prompt": "Pick one", "options": ["x", "y"], "gold": "x"})
        + "\n"
        + json.dumps({"prompt": "Pick again", "options": ["x", "y"]})
        + "\n"
    )
    answers = tmp_path / "answers.jsonl"
    assert (
        main(
            [
                "ask",
                "--run",
                str(run_dir),
                "--condition",
                "base",
                "--file",
                str(questions),
                "--field",
                "question=prompt",
                "--field",
                "choices=options",
                "--field",
                "answers=gold",
                "--out",
                str(answers),
            ]
        )
        == 0
    )
    rows = read_jsonl(answers)
    assert [(r["answer"], r["confidence"], r["correct"]) for r in rows] == [("A", 0.7, True), ("A", 0.7, None)]

    for argv, message in (
        (["--condition", "multitask", "Q?"], "not in this run"),
        (["--condition", "base"], "give one QUESTION or --file"),
        (["--condition", "base", "--field", "nonsense", "--file", str(questions)], "expected KEY=VALUE"),
    ):
        assert main(["ask", "--run", str(run_dir), *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["ask", "--run", str(tmp_path), "--condition", "base", "Q?"]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_calibrated_needs_a_fitted_map_for_that_condition(run_dir, tmp_path):
    from metaconf.errors import ConfigError

    config = parse_config({**SMALL, "conditions": ["base", "single"]})
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text(
        (run_dir / "config.yaml").read_text().replace("conditions:\n- base\n", "conditions:\n- base\n- single\n")
    )
    assert (
        parse_config(__import__("yaml").safe_load((other / "config.yaml").read_text())).conditions == config.conditions
    )
    with pytest.raises(ConfigError, match="has not been trained"):
        metaconf.ask(other, "single", "Q?")
    (other / "training" / "single").mkdir(parents=True)
    (other / "training" / "single" / "DONE").write_text("")
    with pytest.raises(ConfigError, match="recalibration.json: missing"):
        metaconf.ask(other, "single", "Q?", calibrated=True)
    (other / "baselines").mkdir()
    (other / "baselines" / "recalibration.json").write_text((run_dir / "baselines" / "recalibration.json").read_text())
    with pytest.raises(ConfigError, match="no recalibration fitted for condition 'single'"):
        metaconf.ask(other, "single", "Q?", calibrated=True)
