"""FSDP2 through `accelerate launch` on two CPU processes (gloo) trains the same adapter as one process.

The launch uses the shipped config (metaconf/training/launch_configs/fsdp_cpu.yaml). Two ranks with batch 2 see, at
every step, the same four examples as one process with batch 4 (accelerate shards each global batch of the same
seeded order), so the adapters must agree to float tolerance; the saved FSDP adapter is a plain PEFT folder.
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
WORKER = Path(__file__).parent / "fixtures" / "training" / "fsdp_worker.py"


def _adapter_tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


@pytest.mark.slow  # two fresh interpreters under accelerate launch + one reference process: about a minute
def test_fsdp_two_cpu_processes_match_one_process(tmp_path, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    train = write_train_file(tmp_path / "train.jsonl", n=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    fsdp_out, one_out, dump = tmp_path / "fsdp", tmp_path / "one", tmp_path / "dump"
    dump.mkdir()
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config("fsdp_cpu"))]
    launch += ["--main_process_port", "0", str(WORKER)]
    proc = subprocess.run(
        [*launch, str(tiny_model), str(train), str(fsdp_out), str(dump), "2"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, str(WORKER), str(tiny_model), str(train), str(one_out), str(tmp_path), "4"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-3000:]

    for rank in (0, 1):
        info = json.loads((dump / f"info-rank{rank}.json").read_text())
        assert info == {
            "world_size": 2,
            "distributed_type": "DistributedType.FSDP",
            "fsdp_version": 2,
            "lora_sharded": True,  # the LoRA weights were DTensors: FSDP2 sharded them, not DDP copies
            "global_step": 4,  # 16 examples / (2 per rank x 2 ranks)
        }
    assert json.loads((tmp_path / "info-rank0.json").read_text())["distributed_type"] == "DistributedType.NO"

    # a normal PEFT adapter folder (the full state dict gathered on save), equal to the one-process adapter
    assert json.loads((fsdp_out / "train_config.json").read_text())["world_size"] == 2
    sharded, single = _adapter_tensors(fsdp_out / "adapter"), _adapter_tensors(one_out / "adapter")
    assert sharded.keys() == single.keys() and len(single) > 0
    assert all(type(t) is torch.Tensor and t.shape == single[k].shape for k, t in sharded.items())
    moved = max(float(t.abs().max()) for k, t in single.items() if "lora_B" in k)
    assert moved > 1e-4  # trained: lora_B starts at zero
    for key, tensor in single.items():
        torch.testing.assert_close(sharded[key], tensor, rtol=1e-4, atol=1e-5, msg=key)
    steps = [json.loads(line)["step"] for line in (fsdp_out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    loaded = PeftModel.from_pretrained(base, str(fsdp_out / "adapter"))  # loads like any adapter
    weight = dict(loaded.named_parameters())
    key = next(k for k in single if "lora_B" in k)
    torch.testing.assert_close(weight[key.replace(".weight", ".default.weight")].detach(), sharded[key])
