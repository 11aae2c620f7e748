"""The whole `metaconf run` pipeline: config validation, every stage, resume, the CLI."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from helpers.study import SMALL, CountingStudy, ScriptedStudy, scripted_answer
from metaconf.cli import main
from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import ConfigError
from metaconf.evaluation import make_pairs
from metaconf.study.config import load_config, parse_config
from metaconf.study.runner import Study


def test_config_rejects_bad_fields_naming_them(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'data\.train\.0\.train'"):
        parse_config({**SMALL, "data": {"train": [{"name": "mmlu_pro", "train": 0}]}})
    with pytest.raises(ConfigError, match=r"field 'evaluation\.n_bootstrap'"):
        parse_config({**SMALL, "evaluation": {"n_bootstrap": 5}})
    with pytest.raises(ConfigError, match=r"field 'data\.eval\.0\.name': unknown dataset 'nope'"):
        parse_config({**SMALL, "data": {"train": SMALL["data"]["train"], "eval": [{"name": "nope"}]}})
    with pytest.raises(ConfigError, match="conditions"):
        parse_config({**SMALL, "conditions": ["base", "telepathy"]})
    with pytest.raises(ConfigError, match="model.name"):
        parse_config({**SMALL, "model": {"engine": "hf"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_lora_settings_can_change_per_condition():
    multitask = {"name": "multitask", "training": {"epochs": 2}}
    raw = {**SMALL, "training": {"lora": {"epochs": 1, "rank": 4}}}
    config = parse_config({**raw, "conditions": ["base", "single", multitask]})
    assert config.lora_for("multitask").epochs == 2 and config.lora_for("multitask").rank == 4
    assert config.lora_for("single") == config.training.lora
    with pytest.raises(ConfigError, match=r"conditions\.1\.training\.epochz: Extra inputs"):
        parse_config({**raw, "conditions": ["base", {"name": "single", "training": {"epochz": 2}}]})
    # the 0.2 spelling still works (with a deprecation line) and lands in the condition's record
    old = parse_config({**raw, "training": {**raw["training"], "lora_by_condition": {"multitask": {"epochs": 2}}}})
    assert old.condition("multitask") == config.condition("multitask")
    with pytest.raises(ConfigError, match=r"lora_by_condition\.multitask\.epochz: Extra inputs"):
        parse_config({**raw, "training": {"lora_by_condition": {"multitask": {"epochz": 2}}}})
    with pytest.raises(ConfigError, match="not trained conditions"):
        parse_config({**raw, "conditions": ["base", "single"], "training": {"lora_by_condition": {"pairwise": {}}}})


def test_conditions_are_records_checked_before_any_work():
    sets = {"sets": [{"name": "single", "task": "single"}]}
    fast = {"name": "fast", "training_set": "single", "training": {"learning_rate": 0.01}}
    config = parse_config({**SMALL, "targets": sets, "conditions": ["base", "single", fast]})
    assert config.trained_conditions == ["single", "fast"] and config.condition("fast").training_set == "single"
    assert config.model_dump(mode="json")["conditions"] == ["base", "single", fast]  # names stay names
    cases = [
        ({"conditions": ["base", {"name": "fast", "training_set": "nope"}]}, r"conditions\.1\.training_set': 'fast'"),
        ({"conditions": ["base", "base"]}, "conditions repeat"),
        ({"conditions": ["base", {"name": "single", "color": "red"}]}, r"conditions\.1\.color"),
        ({"conditions": [{"name": "base", "training": {"epochs": 2}}]}, "not fine-tuned"),
        ({"conditions": ["base", {"name": "a/b", "training_set": "single"}]}, r"conditions\.1\.name"),
        ({"conditions": ["base", {"name": "x", "objective": "dpo"}]}, r"conditions\.1\.objective"),
        ({"conditions": ["base", fast], "training": {"backend": "hosted"}}, "hosted fine-tuning takes no"),
        (
            {
                "conditions": ["base", {"name": "b", "training_set": "single", "objective": "brier"}],
                "training": {"backend": "hosted"},
            },
            r"field 'conditions\.1\.objective': hosted fine-tuning trains sft only, not brier",
        ),
    ]
    for change, error in cases:
        with pytest.raises(ConfigError, match=error):
            parse_config({**SMALL, "targets": sets, **change})


def test_invalid_config_fails_before_any_work(tmp_path, capsys):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({**SMALL, "targets": {"n_samples": "ten"}}))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "targets.n_samples" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_make_pairs_distinct_balanced_and_seeded():
    from metaconf.data import load_dataset

    qs = load_dataset("mmlu_pro", limit=24)
    pairs = make_pairs(qs, 24, seed=1)
    assert len(pairs) == 24
    assert all(a.id != b.id for a, b in pairs)
    assert len({frozenset((a.id, b.id)) for a, b in pairs}) == 24
    counts = {}
    for a, b in pairs:
        counts[a.id] = counts.get(a.id, 0) + 1
        counts[b.id] = counts.get(b.id, 0) + 1
    assert set(counts.values()) == {2}  # every question in exactly two pairs
    assert [(a.id, b.id) for a, b in make_pairs(qs, 24, seed=1)] == [(a.id, b.id) for a, b in pairs]
    assert [(a.id, b.id) for a, b in make_pairs(qs, 24, seed=2)] != [(a.id, b.id) for a, b in pairs]


def test_scripted_study_runs_every_stage_and_resumes(tmp_path):
    config = parse_config({**SMALL, "conditions": ["base"]})
    run_dir = tmp_path / "run"
    study = ScriptedStudy(config, run_dir, quiet=True)
    study.run(("data", "targets", "consistency", "evaluate", "metrics", "report"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the scripted engine cannot guide: every stage fell back to free text, and the run says so
    assert metrics["format"] == {"targets": "free", "consistency": "free", "evaluation": "free"}
    assert json.loads((run_dir / "format.json").read_text()) == metrics["format"]
    rows = {(r["condition"], r["task"], r["dataset"]): r for r in metrics["rows"] if r["condition"] == "base"}
    assert {k[2] for k in rows} >= {"mmlu_pro", "gsm8k", "truthfulqa"}
    single = rows[("base", "single", "gsm8k")]
    assert single["n"] == 6 and single["parse_rate"] == 1.0
    assert single["accuracy"] == pytest.approx(sum(q.answers == ["12"] for q in study.eval_sets["gsm8k"]) / 6)
    assert rows[("base", "pairwise", "mmlu_pro")]["n"] == 6
    for name in (
        "report.md",
        "report.html",
        "templates.json",
        "config.yaml",
        "data/splits.json",
        "consistency/train.jsonl",
        "consistency/eval.jsonl",
    ):
        assert (run_dir / name).is_file(), name
    # held-out questions are never trained on
    splits = json.loads((run_dir / "data" / "splits.json").read_text())
    held = {i for ids in splits["eval"].values() for i in ids}
    assert not held & set(splits["train"])
    stored = study.store.count()

    # a rerun recomputes nothing: the store does not grow and the engine is never asked
    rerun = CountingStudy(config, run_dir, quiet=True)
    rerun.run(("data", "targets", "consistency", "evaluate", "metrics"))
    assert study.store.count() == stored
    assert rerun.engines and rerun.generated() == 0


def test_interrupted_evaluation_resumes_without_redoing(tmp_path):
    config = parse_config({**SMALL, "conditions": ["base"]})
    run_dir = tmp_path / "run"
    ScriptedStudy(config, run_dir, quiet=True).run(("data", "targets", "consistency"))

    class Crash(Exception):
        pass

    class CrashingStudy(ScriptedStudy):
        def engine(self, condition="base"):
            produced = []

            def answer(messages, i):
                if len(produced) == 9:
                    raise Crash()
                produced.append(1)
                return scripted_answer(messages, i)

            return ScriptedEngine(answer, store=self.store, name=f"scripted-{condition}", quiet=True, batch_size=3)

    with pytest.raises(Crash):
        CrashingStudy(config, run_dir, quiet=True).run(("evaluate",))
    assert not list((run_dir / "predictions").glob("*.jsonl"))  # nothing half-written
    before = Study(config, run_dir, quiet=True).store.count()

    resumed = CountingStudy(config, run_dir, quiet=True)
    resumed.run(("evaluate",))
    assert len(list((run_dir / "predictions").glob("*.jsonl"))) == 6
    total = Study(config, run_dir, quiet=True).store.count()
    assert total > before and resumed.generated() == total - before  # only what was missing was generated


def test_demo_config_is_the_papers_design():
    from metaconf.study.cli import demo_config_text

    config = parse_config(yaml.safe_load(demo_config_text()), source="demo")
    assert config.condition_names == ["base", "single", "single_shuffled", "pairwise", "multitask", "multitask_brier"]
    assert ("single", "single_shuffled") in config.contrasts()  # the shuffled-target control, found from the flag
    assert config.condition("multitask_brier").objective == "brier"
    assert ("multitask_brier", "multitask") in config.contrasts()  # "which objective": against its sft twin
    assert [d.name for d in config.data.train] == ["mmlu_pro", "gsm8k", "triviaqa"]
    assert [d.name for d in config.data.eval] == ["metamedqa", "legalbench", "truthfulqa"]
    assert sum(d.train for d in config.data.train) >= 150
    assert all(d.held_out >= 24 for d in config.data.train) and all(d.n >= 24 for d in config.data.eval)
    assert config.evaluation.n_pairs(24) >= 24  # a connected design: every question in at least 2 pairs
    assert config.evaluation.pairs_per_dataset is None and config.evaluation.pairs_per_question >= 2
    assert config.targets.n_samples == 10 and config.targets.temperature == 1.0
    from metaconf.training import LoraTrainConfig

    assert config.training.lora == LoraTrainConfig.for_cpu_demo()  # `metaconf train --demo-defaults` = the demo
    assert config.lora_for("multitask").epochs == 2


def test_paper_example_config_validates():
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "examples" / "paper.yaml")
    assert config.model.engine == "vllm" and config.trained_conditions == ["single", "pairwise", "multitask"]


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "demo", "datasets"):
        assert re.search(rf"\b{command}\b", out)


class TinyModelStudy(Study):
    """The real stages on a tiny random model, except that the training answers come from the scripted model:
    a random model's answers never parse, which would leave no training examples."""

    def stage_targets(self):
        from metaconf.targets import build_data

        engine = ScriptedEngine(scripted_answer, store=self.store, name="scripted-targets", quiet=True)
        return str(build_data(self.run_dir, engine, self.train_questions, self.config.targets))


@pytest.mark.slow  # trains three LoRA adapters and evaluates four conditions: minutes on 2 cores
def test_whole_study_on_a_tiny_model_trains_every_condition(tmp_path, tiny_model):
    """Every other stage for real: LoRA training of three adapters, evaluation with the adapters, report."""
    raw = {
        **SMALL,
        "model": {"engine": "hf", "name": str(tiny_model)},
        "targets": {"n_samples": 3, "max_new_tokens": 24},  # guided (the default): room for the answer format
        "training": {
            "lora": {
                "rank": 2,
                "alpha": 4,
                "max_steps": 2,
                "batch_size": 4,
                "max_length": 1024,
                "top_layers": 1,
                "logging_steps": 1,
            }
        },
        "evaluation": {"pairs_per_dataset": 4, "consistency_samples": 2, "n_boot": 50},
    }
    run_dir = tmp_path / "run"
    study = TinyModelStudy(parse_config(raw), run_dir, quiet=True)
    study.run()
    for condition in ("single", "pairwise", "multitask"):
        assert (run_dir / "training" / condition / "DONE").is_file()
        assert (run_dir / "training" / condition / "adapter" / "adapter_config.json").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # targets come from the scripted engine through stage_targets above (not recorded); the rest is guided
    assert metrics["format"] == {"targets": None, "consistency": "guided", "evaluation": "guided"}
    keys = {(r["condition"], r["task"], r["dataset"]) for r in metrics["rows"]}
    for condition in ("base", "single", "pairwise", "multitask"):
        for task in ("single", "pairwise"):
            for dataset in ("mmlu_pro", "gsm8k", "truthfulqa"):
                assert (condition, task, dataset) in keys
    html = (run_dir / "report.html").read_text()
    assert "multitask" in html and "<script src=" not in html
    # the adapters change what the model says: trained conditions have their own completions in the store
    import sqlite3

    adapters = {
        a
        for (a,) in sqlite3.connect(run_dir / "completions.sqlite").execute("SELECT DISTINCT adapter FROM completions")
    }
    assert len(adapters) == 4  # "" for the base model + one identity per adapter
    # baselines next to the conditions, the teacher gap of each trained condition, meta-d′ of every condition
    methods = {(r["method"], r["dataset"]) for r in metrics["baselines"]["rows"]}
    assert len(methods) == 7 * 3  # the six methods and the constant predictor
    assert len(metrics["baselines"]["teacher_gap"]) == 3 * 3 and len(metrics["metacognition"]["rows"]) == 4 * 3
    # `metaconf ask` on every condition: the run's engine (HF + that adapter), template and store answer, so a
    # question the evaluation answered comes back exactly as stored
    from metaconf import ask
    from metaconf.io import read_jsonl

    for condition in ("base", "single", "pairwise", "multitask"):
        stored = read_jsonl(run_dir / "predictions" / f"{condition}__single__gsm8k.jsonl")[0]
        q = next(q for q in study.eval_sets["gsm8k"] if q.id == stored["id"])
        (result,) = ask(run_dir, condition, [q])
        assert result.raw == stored["raw"] and result.stated_confidence == stored["confidence"]
        assert result.condition == condition


def test_an_empty_training_set_stops_training_with_the_reason(tmp_path):
    config = parse_config({**SMALL, "conditions": ["base", "pairwise"], "targets": {"n_samples": 4, "pair_gap": 1.0}})
    study = ScriptedStudy(config, tmp_path / "run", quiet=True)
    with pytest.raises(ConfigError, match="'pairwise' training set is empty"):
        study.run(("data", "targets", "train"))


FIFTH = """
conditions:
  - base
  - single
  - {name: single_fast, training_set: single, training: {learning_rate: 0.02}, color: "#D55E00"}
"""


@pytest.mark.slow  # trains two LoRA adapters on the tiny model: a minute on 2 loaded cores
def test_a_condition_defined_only_in_yaml_runs_through_every_stage(tmp_path, tiny_model):
    """A condition that exists only as a record in the config (its own training set, learning rate and colour)
    is trained, evaluated, compared, tabulated and drawn like the paper's, with no code that knows its name."""
    from PIL import Image

    raw = {
        **SMALL,
        **yaml.safe_load(FIFTH),
        "model": {"engine": "hf", "name": str(tiny_model)},
        "targets": {"n_samples": 3, "max_new_tokens": 24, "sets": [{"name": "single", "task": "single"}]},
        "training": {"lora": {"rank": 2, "alpha": 4, "max_steps": 2, "batch_size": 4, "top_layers": 1}},
        "evaluation": {"pairs_per_dataset": 3, "consistency_samples": 2, "n_boot": 50},
        "baselines": [],
    }
    config = parse_config(raw)
    assert config.condition_names == ["base", "single", "single_fast"]
    assert config.lora_for("single_fast").learning_rate == 0.02 and config.lora_for("single").learning_rate != 0.02
    run_dir = tmp_path / "run"
    TinyModelStudy(config, run_dir, quiet=True).run()

    # trained on the single set with its own learning rate
    args = json.loads((run_dir / "training" / "single_fast" / "train_config.json").read_text())
    assert args["config"]["learning_rate"] == 0.02
    assert (run_dir / "training" / "single_fast" / "adapter" / "adapter_config.json").is_file()
    # evaluated on every task and dataset, compared with the base model, in the findings and every table
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {(r["task"], r["dataset"]) for r in metrics["rows"] if r["condition"] == "single_fast"} == {
        (t, d) for t in ("single", "pairwise") for d in ("mmlu_pro", "gsm8k", "truthfulqa")
    }
    assert any(c["condition"] == "single_fast" for c in metrics["comparisons"])
    report = (run_dir / "report.md").read_text()
    tables = [line for line in report.splitlines() if line.startswith("|")]
    assert sum("single\\_fast" in line for line in tables) >= 6  # Markdown escapes the underscore
    # its own colour in the figures (and no other condition drawn in it)
    pixels = 0
    for png in (run_dir / "plots").glob("*.png"):
        image = Image.open(png).convert("RGB")
        pixels += sum(count for count, rgb in image.getcolors(1 << 24) if rgb == (0xD5, 0x5E, 0x00))
    assert pixels > 500
    # the stored config keeps the record, so `evaluate` and `report` see the same conditions
    stored = parse_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert stored.conditions == config.conditions


CUSTOM_SINGLE = """\
name: terse
version: 1
max_new_tokens: 48
stop: ["\\n\\n"]
user:
  mc: "TERSE pick a letter, reply as Reply: <letter> | sure: <0-100>/100\\n{question}\\n{choices}"
  numeric: "TERSE give the number, reply as Reply: <number> | sure: <0-100>/100\\n{question}"
  open: "TERSE answer briefly, reply as Reply: <answer> | sure: <0-100>/100\\n{question}"
  boolean: "TERSE yes or no, reply as Reply: <yes or no> | sure: <0-100>/100\\n{question}"
output: "Reply: {answer} | sure: {confidence}/100"
"""


def test_a_custom_single_template_is_trained_and_evaluated_with_the_same_format(tmp_path):
    """targets.single_template is the format the model is trained on *and* the one it is evaluated with:
    the evaluation's prompts, guide and parser all come from the custom template."""
    template = tmp_path / "terse.yaml"
    template.write_text(CUSTOM_SINGLE)
    guides: list[str | None] = []

    def answer(messages, i):
        text = messages[-1]["content"]
        if text.startswith("TERSE"):
            return f"Reply: {'A' if chr(10) + 'A. ' in text else '12'} | sure: 70/100"
        return scripted_answer(messages, i)

    class Guiding(ScriptedEngine):
        supports_guide = True

        def generate(self, prompts, *args, guide=None, **kwargs):
            guides.extend(guide or [None] * len(prompts))
            return super().generate(prompts, *args, guide=guide, **kwargs)

    class CustomStudy(Study):
        def engine(self, condition="base"):
            return Guiding(answer, store=self.store, name=f"scripted-{condition}", quiet=True)

    config = parse_config(
        {**SMALL, "conditions": ["base"], "targets": {"n_samples": 2, "single_template": str(template)}}
    )
    run_dir = tmp_path / "run"
    CustomStudy(config, run_dir, quiet=True).run(("data", "targets", "consistency", "evaluate"))
    trained = [json.loads(line) for line in (run_dir / "training_sets" / "single" / "train.jsonl").open()]
    assert trained[0]["messages"][-2]["content"].startswith("TERSE")
    assert re.fullmatch(r"Reply: \S+ \| sure: \d+/100", trained[0]["messages"][-1]["content"])
    rows = [json.loads(line) for line in (run_dir / "predictions" / "base__single__gsm8k.jsonl").open()]
    assert rows and all(r["raw"].startswith("Reply: ") for r in rows)  # asked with the custom prompt
    assert all(r["parsed"] and r["confidence"] == pytest.approx(0.7) and r["answer"] == "12" for r in rows)
    assert any(g is not None and g.startswith("Reply: ") and "sure: " in g for g in guides)
    assert not any(g is not None and g.startswith("Answer: ") and "Confidence" in g for g in guides)


def test_conditions_from_flags_are_names_or_records(tmp_path, capsys):
    """`--conditions` takes names (the paper's), YAML records, or one YAML list, like the config file."""
    for words, expected in [
        (["base", "multitask"], ["base", "multitask"]),
        (["base", "{name: fast, training_set: single}"], ["base", {"name": "fast", "training_set": "single"}]),
        (["[base, {name: fast, training_set: single}]"], ["base", {"name": "fast", "training_set": "single"}]),
    ]:
        assert main(["demo", "--show-config", "--conditions", *words]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["conditions"] == expected
    assert main(["demo", "--show-config", "--conditions", "base", "{name: x, training_set: nope}"]) == 2
    assert "conditions.1.training_set" in capsys.readouterr().err


def test_a_retrained_adapter_is_evaluated_again(tmp_path):
    """Predictions are kept for the adapter they were made with: a condition whose adapter was retrained (another
    DONE fingerprint) is evaluated again, the others are not."""
    config = parse_config({**SMALL, "conditions": ["base", "single", "pairwise"]})
    run_dir = tmp_path / "run"
    for condition in ("single", "pairwise"):
        (run_dir / "training" / condition).mkdir(parents=True)
        (run_dir / "training" / condition / "DONE").write_text("fingerprint-1\n")
    ScriptedStudy(config, run_dir, quiet=True).run(("data", "targets", "consistency", "evaluate"))
    stamps = json.loads((run_dir / "predictions" / "adapters.json").read_text())
    assert stamps == {"base": None, "single": "fingerprint-1", "pairwise": "fingerprint-1"}

    (run_dir / "training" / "single" / "DONE").write_text("fingerprint-2\n")  # retrained with other settings
    rerun = CountingStudy(config, run_dir, quiet=True)
    rerun.run(("evaluate",))
    adapters = [e.name for e in rerun.engines if e.name != "scripted-base"]  # base: sampling and the shared prefill
    assert adapters == ["scripted-single"]
    assert json.loads((run_dir / "predictions" / "adapters.json").read_text())["single"] == "fingerprint-2"
    again = CountingStudy(config, run_dir, quiet=True)
    again.run(("evaluate",))
    assert {e.name for e in again.engines} == {"scripted-base"}  # everything stored is current now
