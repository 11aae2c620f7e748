"""Sharded training through `accelerate launch` on two CPU processes trains the same adapter as one process.

FSDP2 (gloo) with the shipped metaconf/training/launch_configs/fsdp_cpu.yaml, and DeepSpeed ZeRO-2 / ZeRO-3 with the
shipped deepspeed_zero2/3.yaml (2 processes, no mixed precision: the CPU here has no fast bf16 training path for
DeepSpeed's engine) where DeepSpeed is installed (`pip install metaconf[deepspeed]`; its CPU communication op is
compiled on first use, a few minutes). Two ranks with batch 2 see, at every step, the same four examples as one
process with batch 4 (accelerate shards each global batch of the same seeded order), so the adapters must agree to
float tolerance; the saved adapter is a plain PEFT folder (the full state dict gathered from the shards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.training_data import write_train_file
from metaconf.training.launch import launch_config

pytest.importorskip("trl")
WORKER = Path(__file__).parent / "fixtures" / "training" / "launch_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
# config -> (extra launch flags, accelerate's distributed type, FSDP version, what the LoRA weights were while training)
LAUNCHES = {
    "fsdp_cpu": ([], "DistributedType.FSDP", 2, ["DTensor"]),
    "deepspeed_zero2": (
        ["--num_processes", "2", "--mixed_precision", "no"],
        "DistributedType.DEEPSPEED",
        None,
        ["Parameter"],
    ),
    "deepspeed_zero3": (
        ["--num_processes", "2", "--mixed_precision", "no"],
        "DistributedType.DEEPSPEED",
        None,
        ["zero3-partitioned"],
    ),
}


def _adapter_tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model) -> tuple[Path, Path]:
    """(training file, the adapter one process trained on it with batch 4)."""
    tmp = tmp_path_factory.mktemp("one-process")
    train = write_train_file(tmp / "train.jsonl", n=16)
    _run([sys.executable, str(WORKER), str(tiny_model), str(train), str(tmp / "out"), str(tmp), "4"])
    assert json.loads((tmp / "info-rank0.json").read_text())["distributed_type"] == "DistributedType.NO"
    return train, tmp / "out" / "adapter"


@pytest.mark.slow  # two fresh interpreters under accelerate launch (+ the one-process reference): a minute or more
@pytest.mark.parametrize("config", list(LAUNCHES))
def test_two_cpu_processes_match_one_process(tmp_path, tiny_model, reference, config):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if config.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed not installed (pip install metaconf[deepspeed])")
    flags, distributed_type, fsdp_version, lora_weights = LAUNCHES[config]
    train, one_adapter = reference
    out, dump = tmp_path / "out", tmp_path / "dump"
    dump.mkdir()
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config(config)), *flags]
    _run([*launch, "--main_process_port", "0", str(WORKER), str(tiny_model), str(train), str(out), str(dump), "2"])

    for rank in (0, 1):
        assert json.loads((dump / f"info-rank{rank}.json").read_text()) == {
            "world_size": 2,
            "distributed_type": distributed_type,
            "fsdp_version": fsdp_version,
            "lora_weights": lora_weights,  # FSDP2 / ZeRO-3 held shards, not copies
            "global_step": 4,  # 16 examples / (2 per rank x 2 ranks)
        }

    # a plain PEFT adapter folder (the full state dict gathered on save), equal to the one-process adapter
    assert json.loads((out / "train_config.json").read_text())["world_size"] == 2
    sharded, single = _adapter_tensors(out / "adapter"), _adapter_tensors(one_adapter)
    assert sharded.keys() == single.keys() and len(single) > 0
    assert max(float(t.abs().max()) for k, t in single.items() if "lora_B" in k) > 1e-4  # trained: lora_B starts at 0
    for key, tensor in single.items():
        torch.testing.assert_close(sharded[key], tensor, rtol=1e-4, atol=1e-6, msg=key)
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out / "adapter"))
    weights = dict(loaded.named_parameters())
    key = next(k for k in single if "lora_B" in k)
    torch.testing.assert_close(weights[key.replace(".weight", ".default.weight")].detach(), sharded[key])
