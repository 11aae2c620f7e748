"""Two CPU processes under torchrun (gloo DDP) train one adapter: both train, gradients sync, one save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.training_data import write_labelled_sets, write_train_file

pytest.importorskip("trl")
WORKER = Path(__file__).parent / "fixtures" / "training" / "ddp_worker.py"


@pytest.mark.slow  # two fresh interpreters importing torch + transformers + TRL, then training: minutes on 2 cores
@pytest.mark.parametrize("cached", [False, True], ids=["full-model", "cached-lower-layers"])
def test_two_process_ddp_on_cpu(tmp_path, cached, tiny_model):
    import torch

    train = write_train_file(tmp_path / "train.jsonl", n=16)
    out, dump = tmp_path / "out", tmp_path / "dump"
    dump.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(tiny_model),
        str(train),
        str(out),
        str(dump),
    ]
    if cached:
        cmd.append("cached")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    infos = [json.loads((dump / f"info-rank{r}.json").read_text()) for r in (0, 1)]
    for rank, info in enumerate(infos):
        assert info == {
            "rank": rank,
            "world_size": 2,
            "global_step": 4,
            "batches_per_epoch": 4,
            "backend": "gloo",
        }  # 16 examples / batch 2 / 2 ranks: each rank trained on its half
    w0, w1 = (torch.load(dump / f"weights-rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys() and len(w0) > 0
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # gradients were all-reduced: identical adapters
    assert any(k.endswith("lora_B.default.weight") and w0[k].abs().sum() > 0 for k in w0)  # and they trained

    # the adapter was written once, by rank 0 (with the cache: the upper model's, then renumbered into adapter/)
    assert not (dump / "saves-rank1.txt").exists()
    saved = out / ("adapter.upper-layers" if cached else "adapter")
    assert (dump / "saves-rank0.txt").read_text().splitlines().count(str(saved)) == 1
    if cached:
        assert json.loads((out / "adapter" / "adapter_config.json").read_text())["layers_to_transform"] == [1]
    assert (out / "DONE").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((out / "train_config.json").read_text())
    assert info["world_size"] == 2
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.slow  # two fresh interpreters importing torch + transformers + TRL, then training: minutes on 2 cores
def test_two_process_ddp_trains_the_brier_objective(tmp_path, tiny_model):
    """The brier loss under DDP on cached lower-layer states: both ranks train their half, the adapters agree."""
    import torch

    run = write_labelled_sets(tmp_path / "run", n=16, sets=("multitask",))
    train = run / "training_sets" / "multitask" / "train.jsonl"
    out, dump = tmp_path / "out", tmp_path / "dump"
    dump.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = [str(tiny_model), str(train), str(out), str(dump), "cached", "brier"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = [json.loads((dump / f"info-rank{r}.json").read_text()) for r in (0, 1)]
    assert [(i["world_size"], i["global_step"], i["batches_per_epoch"]) for i in infos] == [(2, 4, 4)] * 2
    w0, w1 = (torch.load(dump / f"weights-rank{r}.pt") for r in (0, 1))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert any(k.endswith("lora_B.default.weight") and w0[k].abs().sum() > 0 for k in w0)
    info = json.loads((out / "train_config.json").read_text())
    assert info["world_size"] == 2 and info["objective"] == "brier" and (out / "DONE").is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all("confidence_brier" in r or "choice_log_loss" in r for r in log)
