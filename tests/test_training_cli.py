"""`metaconf train` / `metaconf merge`: options map onto LoraTrainConfig, errors are one line, a tiny run trains."""

from __future__ import annotations

import json

import pytest

from metaconf.cli import build_parser, main
from metaconf.training import LoraTrainConfig


def parse(*argv: str):
    args = build_parser().parse_args(["train", "--run", "RUN", *argv])
    return args._command.parse(args)[1]


NEW_LORA = (
    "--lora.rank 4 --no-lora.group_by_length --lora.target_modules q_proj v_proj --lora.gradient_checkpointing true"
)
OLD_LORA = "--rank 4 --no-group-by-length --target-modules q_proj v_proj --gradient-checkpointing on"


def test_flags_override_the_preset_and_keep_the_rest():
    config = parse("--demo-defaults", *NEW_LORA.split())
    demo = LoraTrainConfig.for_cpu_demo()
    assert config.lora.rank == 4 and config.lora.group_by_length is False
    assert config.lora.gradient_checkpointing is True and config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.lora.learning_rate == demo.learning_rate and config.lora.top_layers == demo.top_layers
    assert parse().lora == LoraTrainConfig() and parse().hosted is None
    assert parse("--lora.target_modules", "all-linear").lora.target_modules == "all-linear"
    assert parse("--lora.gradient_checkpointing", "auto").lora.gradient_checkpointing == "auto"


def test_old_flags_still_work_for_one_release_with_a_deprecation_line(capsys):
    old = parse(
        "--demo-defaults", *OLD_LORA.split(), *["--hosted", "gpt-x", "--hosted-epochs", "2", "--restart-failed"]
    )
    new = parse(
        "--demo-defaults",
        *NEW_LORA.split(),
        *["--hosted.base_model", "gpt-x", "--hosted.epochs", "2", "--hosted.restart_failed"],
    )
    assert old == new and old.hosted.base_model == "gpt-x" and old.hosted.restart_failed is True
    err = capsys.readouterr().err
    assert "--rank is deprecated and will be removed in metaconf 0.3; use --lora.rank" in err
    assert "--no-group-by-length is deprecated" in err and "use --no-lora.group_by_length" in err


def test_config_file_and_bad_values_are_one_line(tmp_path, capsys):
    good = tmp_path / "c.yaml"
    good.write_text("lora:\n  rank: 2\n  epochs: 1\nconditions: [single]\n")
    config = parse("--config", str(good), "--lora.epochs", "3")
    assert config.lora.rank == 2 and config.lora.epochs == 3 and config.conditions == ["single"]
    old = tmp_path / "c.json"  # metaconf 0.1: LoraTrainConfig fields at the top level, JSON
    old.write_text(json.dumps({"rank": 2, "epochs": 1}))
    assert parse("--config", str(old)).lora.rank == 2
    assert "top level are deprecated; put them under 'lora:'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rnak": 2}))
    run = tmp_path / "run"
    run.mkdir()
    assert main(["train", "--run", str(run), "--config", str(bad)]) == 2
    assert "bad.json: field 'rnak': Extra inputs are not permitted" in capsys.readouterr().err
    assert main(["train", "--run", str(run), "--lora.learning_rate", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "metaconf: error: --lora.learning_rate: Input should be greater than 0"
    assert main(["train", "--run", str(run), "--learning-rate", "-1"]) == 2  # an old flag: the error names the new
    assert "--lora.learning_rate: Input should be greater than 0" in capsys.readouterr().err
    assert main(["train", "--run", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["train", "--run", str(run), "--conditions", "single"]) == 2
    assert "training set for condition 'single' not found" in capsys.readouterr().err


def test_train_then_merge_from_the_command_line(tmp_path, capsys, tiny_model):
    pytest.importorskip("trl")
    from helpers.training_data import write_train_file

    run = tmp_path / "run"
    write_train_file(run / "training_sets" / "single" / "train.jsonl", n=4)
    code = main(
        [
            "train",
            "--run",
            str(run),
            "--conditions",
            "single",
            "--model",
            str(tiny_model),
            "--lora.max_steps",
            "1",
            "--lora.rank",
            "2",
            "--lora.batch_size",
            "4",
        ]
    )
    assert code == 0
    assert f"single: {run / 'training' / 'single' / 'adapter'}" in capsys.readouterr().out
    assert json.loads((run / "training" / "single" / "train_config.json").read_text())["config"]["rank"] == 2
    assert (
        main(
            [
                "merge",
                "--model",
                str(tiny_model),
                "--adapter",
                str(run / "training" / "single" / "adapter"),
                "--out",
                str(tmp_path / "merged"),
            ]
        )
        == 0
    )
    assert (tmp_path / "merged" / "config.json").is_file()
    assert main(["merge", "--model", str(tiny_model), "--adapter", str(tmp_path), "--out", str(tmp_path / "m2")]) == 2
