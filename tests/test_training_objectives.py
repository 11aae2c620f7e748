"""Training objectives: the objective reaches training, its fingerprint and every record of the run; sft unchanged."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from helpers.training_data import write_train_file  # noqa: E402
from metaconf.conditions import OBJECTIVES, Condition  # noqa: E402
from metaconf.errors import ConfigError  # noqa: E402
from metaconf.training import LoraTrainConfig, train_conditions  # noqa: E402
from metaconf.training.lora import LoraJob, _fingerprint  # noqa: E402
from metaconf.training.objectives import TRAINERS, objective_inputs, objective_trainer  # noqa: E402

FAST = dict(rank=4, alpha=8.0, dropout=0.0, batch_size=4, logging_steps=1, learning_rate=5e-3, max_length=256)


def test_sft_fingerprints_are_the_ones_they_were_before_objectives():
    # values from `_fingerprint` before objectives existed (main at e9cbae0): finished sft adapters stay reused
    assert _fingerprint(LoraTrainConfig(), "m", "abc", {"precision": "fp32"}) == "c3941c6f306fcbb8"
    bf16 = {"precision": "bf16", "bf16_mode": "weights"}
    assert _fingerprint(LoraTrainConfig.for_cpu_demo(), "m", "abc", bf16) == "ce34c1a71b1c8aea"
    soft = LoraTrainConfig(brier_soft_labels=True)
    assert soft.fingerprint() == LoraTrainConfig().fingerprint()  # counts under objective brier only
    other = _fingerprint(LoraTrainConfig(), "m", "abc", {"precision": "fp32"}, {"name": "brier"})
    assert other != "c3941c6f306fcbb8"


def test_every_objective_has_one_trainer_and_others_are_refused(tmp_path):
    assert set(TRAINERS) == set(OBJECTIVES) == {"sft", "brier", "grpo"}
    with pytest.raises(ConfigError, match="objective 'dpo': not one of sft, brier, grpo"):
        objective_trainer("dpo")
    job = LoraJob(tmp_path / "train.jsonl", tmp_path / "out", "embedded")
    assert objective_inputs(job) == {}  # sft depends on nothing else


def test_condition_records_carry_their_objective_into_the_run_folder(tiny_model, tmp_path):
    run = tmp_path / "run"
    write_train_file(run / "training_sets" / "single" / "train.jsonl", n=4)
    record = Condition(name="mine", training_set="single", objective="sft")
    adapters = train_conditions(run, tiny_model, LoraTrainConfig(**FAST, max_steps=1), [record])
    assert adapters == {"mine": run / "training" / "mine" / "adapter"}
    info = json.loads((run / "training" / "mine" / "train_config.json").read_text())
    assert info["objective"] == "sft" and "objective_inputs" not in info
    meta = json.loads((adapters["mine"] / "metaconf.json").read_text())
    assert meta == {"objective": "sft", "fingerprint": (run / "training" / "mine" / "DONE").read_text().strip()}
