"""scripts/gpu_check.sh: valid bash, and its --dry-run (no GPU needed) prints every step's command and passes its
checks (files present, configs parsing, each python command's --help) on this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def test_gpu_check_is_valid_bash():
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "set -euo pipefail" in SCRIPT.read_text()


@pytest.mark.slow  # imports metaconf, pytest and the benchmarks several times: ~30 s on 2 loaded cores
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu-check"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--python", sys.executable, "--out", str(out), "--venv", ".venv-x"],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    commands = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    joined = "\n".join(commands)
    # every step is printed, none is run (no run folder, no logs)
    assert "nvidia-smi" in joined and ".[vllm,train,hub,dev]" in joined
    assert "metaconf demo --model.engine vllm" in joined
    assert "tests/test_vllm.py" in joined and "METACONF_VLLM_PYTHON=" in joined
    assert "benchmarks/bench_generation.py" in joined and "--vllm-python" in joined
    assert "benchmarks/bench_training.py throughput" in joined and "trl-plain" in joined
    assert not (out / "demo-vllm").exists() and not list(out.glob("*.log"))
    checks = [line for line in proc.stderr.splitlines() if line.startswith("check ")]
    assert len(checks) == 7 and all(line.startswith("check ok:") for line in checks), proc.stderr


def test_gpu_check_refuses_unknown_arguments():
    proc = subprocess.run(["bash", str(SCRIPT), "--gpus", "8"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument '--gpus'" in proc.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a CUDA machine: the real run would start")
def test_gpu_check_without_a_gpu_says_so(tmp_path):
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(tmp_path / "o")], env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 1 and "not a CUDA machine" in proc.stderr
