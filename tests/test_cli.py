"""The command line is built from the typed configs: every field is a flag, `--config FILE` works for every
command, flags override files and presets field by field, and the reference docs list every flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from metaconf.cli import build_parser, commands, main
from metaconf.flags import model_flags
from metaconf.reference import STUDY_HEADER, cli_reference, config_reference
from metaconf.study.config import StudyConfig

DOCS = Path(__file__).parents[1] / "docs"


def parsed(*argv: str):
    """(options, config, source) of one command line, without running it."""
    args = build_parser().parse_args(list(argv))
    return args._command.parse(args)


def option_strings(name: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    return {s for action in sub._actions for s in action.option_strings}


def test_every_command_takes_config_and_every_field_has_a_flag_and_a_line_in_the_docs():
    cli_md, study_md = (DOCS / "cli.md").read_text(), (DOCS / "study.md").read_text()
    assert cli_md.strip() == cli_reference().strip(), "regenerate: python -m metaconf.reference cli > docs/cli.md"
    assert study_md.strip() == (STUDY_HEADER + config_reference()).strip(), (
        "regenerate: python -m metaconf.reference study > docs/study.md"
    )
    names = {c.name for c in commands()}
    assert names >= {"run", "demo", "evaluate", "train", "build-data", "datasets", "report", "ask", "merge"}
    for command in commands():
        flags = option_strings(command.name)
        assert "--config" in flags, command.name
        assert f"## `metaconf {command.name}`" in cli_md
        for flag in command.flags():
            assert flag.option in flags, (command.name, flag.option)
            in_study = command.config is StudyConfig and flag in model_flags(StudyConfig)
            line = f"| `{flag.path}` |" if in_study else f"| `{flag.option}` |"
            assert line in (study_md if in_study else cli_md), (command.name, line)


def test_study_flags_override_the_demo_config_field_by_field(capsys):
    assert (
        main(
            [
                "demo",
                "--show-config",
                "--training.lora.rank",
                "4",
                "--evaluation.n_boot",
                "200",
                "--conditions",
                "base",
                "multitask",
                "--model.options.max_batch_tokens",
                "4096",
            ]
        )
        == 0
    )
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["training"]["lora"]["rank"] == 4 and shown["evaluation"]["n_boot"] == 200
    assert shown["conditions"] == ["base", "multitask"] and shown["model"]["options"] == {"max_batch_tokens": 4096}
    assert main(["demo", "--show-config"]) == 0
    demo = yaml.safe_load(capsys.readouterr().out)
    assert demo["training"]["lora"]["alpha"] == shown["training"]["lora"]["alpha"] != 32.0  # the rest is the demo's
    assert demo["training"]["lora"]["rank"] != 4


def test_run_reads_the_file_then_the_flags(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "data": {"train": [{"name": "gsm8k", "train": 4, "held_out": 2}]},
                "training": {"lora": {"rank": 2}},
            }
        )
    )
    for argv in (["run", str(study)], ["run", "--config", str(study)]):
        _, config, source = parsed(*argv, "--training.lora.epochs", "2")
        assert (config.training.lora.rank, config.training.lora.epochs, source) == (2, 2.0, str(study))
    assert main(["run", str(study), "--training.lora.rank", "0"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "metaconf: error: --training.lora.rank: Input should be greater than or equal to 1"
    )
    assert main(["run", str(study), "--data.train", "[{name: nope}]"]) == 2
    assert "field 'data.train.0.name': unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["run", str(study), "--config", str(study)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["run"]) == 2
    assert "give the config file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse refuses an unknown flag, status 2
        main(["run", str(study), "--training.lora.nope", "1"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --training.lora.nope" in capsys.readouterr().err


def test_evaluate_starts_from_the_runs_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "data": {"train": [{"name": "gsm8k", "train": 4, "held_out": 2}]},
                "evaluation": {"n_boot": 60},
            }
        )
    )
    options, config, source = parsed("evaluate", str(run), "--evaluation.seed", "3")
    assert options.run == run and (config.evaluation.n_boot, config.evaluation.seed) == (60, 3)
    assert source == str(run / "config.yaml")


def test_a_command_without_a_config_model_reads_its_options_from_the_file(tmp_path, capsys):
    options = tmp_path / "o.yaml"
    options.write_text("json: true\n")
    assert main(["datasets", "--config", str(options)]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} >= {"gsm8k", "mmlu_pro"}
    assert main(["datasets", "--config", str(options), "--no-json"]) == 0  # the flag wins
    assert capsys.readouterr().out.startswith("name ")
    options.write_text("jsn: true\n")
    assert main(["datasets", "--config", str(options)]) == 2
    assert "o.yaml: field 'jsn': Extra inputs are not permitted" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build-data", "--out", "R", "--n-samples", "3"], "--n-samples is deprecated"),
        (["train", "--run", "R", "--hosted-epochs", "2", "--hosted", "m"], "--hosted-epochs is deprecated"),
    ],
)
def test_old_flags_say_what_replaces_them(argv, message, capsys):
    parsed(*argv)
    assert message in capsys.readouterr().err


def test_a_missing_field_of_a_section_set_by_flags_names_the_flag(capsys):
    assert main(["train", "--run", ".", "--hosted.epochs", "2"]) == 2
    assert (
        capsys.readouterr().err.strip() == "metaconf: error: --hosted.base_model: Field required (with --hosted.epochs)"
    )


def test_the_model_flags_cover_every_engine_kind(capsys):
    """`model` holds one model config per engine kind: its flags are the fields of all of them, each kind's options
    included, and the flags pick the kind."""
    flags = {f.path for f in model_flags(StudyConfig)}
    assert {"model.engine", "model.name", "model.options.device", "model.options.tensor_parallel_size"} <= flags
    assert {"model.options.send_seed", "grading.judge_model.options.concurrency"} <= flags
    argv = ["demo", "--show-config", "--model.engine", "vllm", "--model.name", "org/m"]
    assert main([*argv, "--model.options.tensor_parallel_size", "2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)["model"]
    assert (shown["engine"], shown["name"], shown["options"]) == ("vllm", "org/m", {"tensor_parallel_size": 2})
    assert main(["demo", "--show-config", "--no-model.options.send_seed"]) == 2
    assert "'model.options.send_seed': not an option of the embedded engine" in capsys.readouterr().err
    assert main([*argv, "--model.options.gpu_memory_utilization", "2"]) == 2
    assert "--model.options.gpu_memory_utilization: Input should be less than or equal to 1" in capsys.readouterr().err
