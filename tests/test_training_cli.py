"""`metaconf train` / `metaconf merge`: options map onto LoraTrainConfig, errors are one line, a tiny run trains."""

from __future__ import annotations

import argparse
import json

import pytest

from metaconf.cli import build_parser, main
from metaconf.training import LoraTrainConfig
from metaconf.training.cli import config_from_args


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["train", "--run", "RUN", *argv])


def test_options_override_the_preset_and_keep_the_rest():
    config = config_from_args(parse("--demo-defaults", "--rank", "4", "--no-group-by-length",
                                    "--target-modules", "q_proj", "v_proj", "--gradient-checkpointing", "on"))
    demo = LoraTrainConfig.for_cpu_demo()
    assert config.rank == 4 and config.group_by_length is False and config.gradient_checkpointing is True
    assert config.target_modules == ["q_proj", "v_proj"]
    assert config.learning_rate == demo.learning_rate and config.top_layers == demo.top_layers
    assert config_from_args(parse()) == LoraTrainConfig()


def test_config_file_and_bad_values_are_one_line(tmp_path, capsys):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"rank": 2, "epochs": 1}))
    config = config_from_args(parse("--config", str(good), "--epochs", "3"))
    assert config.rank == 2 and config.epochs == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rnak": 2}))
    run = tmp_path / "run"
    run.mkdir()
    assert main(["train", "--run", str(run), "--config", str(bad)]) == 2
    assert "bad.json: field 'rnak': Extra inputs are not permitted" in capsys.readouterr().err
    assert main(["train", "--run", str(run), "--learning-rate", "-1"]) == 2
    assert "--learning-rate: Input should be greater than 0" in capsys.readouterr().err
    assert main(["train", "--run", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["train", "--run", str(run), "--conditions", "single"]) == 2
    assert "training set for condition 'single' not found" in capsys.readouterr().err


def test_train_then_merge_from_the_command_line(tmp_path, capsys, tiny_model):
    pytest.importorskip("trl")
    from helpers.training_data import write_train_file

    run = tmp_path / "run"
    write_train_file(run / "training_sets" / "single" / "train.jsonl", n=4)
    code = main(["train", "--run", str(run), "--conditions", "single", "--model", str(tiny_model),
                 "--max-steps", "1", "--rank", "2", "--batch-size", "4"])
    assert code == 0
    assert f"single: {run / 'training' / 'single' / 'adapter'}" in capsys.readouterr().out
    assert json.loads((run / "training" / "single" / "train_config.json").read_text())["config"]["rank"] == 2
    assert main(["merge", "--model", str(tiny_model), "--adapter", str(run / "training" / "single" / "adapter"),
                 "--out", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "config.json").is_file()
    assert main(["merge", "--model", str(tiny_model), "--adapter", str(tmp_path), "--out", str(tmp_path / "m2")]) == 2
