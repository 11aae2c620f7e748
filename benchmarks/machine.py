"""What machine a benchmark figure belongs to: CPU model and flags (lscpu), and its measured matmul rate per dtype."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Any

# The flags that decide how fast fp32 / bf16 matmuls can run
MATMUL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "sve",
    "bf16",
)


def lscpu() -> dict[str, str]:
    """lscpu's fields ({} where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, the matmul-relevant flags, the full lscpu flags line, torch and what `auto` picks."""
    import torch

    from metaconf.precision import choose_dtype, cpu_flags

    info = lscpu()
    flags = info.get("Flags", "")
    have = set(flags.split()) or set(cpu_flags())
    auto = choose_dtype("auto")
    return {
        "cpu": info.get("Model name", platform.processor() or platform.machine()),
        "cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "matmul_flags": [f for f in MATMUL_FLAGS if f in have],
        "auto_dtype": f"{auto.dtype} ({auto.reason})",
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "lscpu_flags": flags,
    }


def matmul_gflops(threads: int, dtype: str = "float32", size: int = 1024, budget_s: float = 2.0) -> float:
    """This machine's rate (GFLOP/s) for a `size`^3 matmul in `dtype` as a linear layer computes it (x @ W.T), at
    `threads` threads: best of as many repeats as fit in `budget_s` (at least 2, at most 10)."""
    import torch
    import torch.nn.functional as F

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
    F.linear(a, b)
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 2 or (spent < budget_s and reps < 10):
        t = time.perf_counter()
        F.linear(a, b)
        took = time.perf_counter() - t
        best, spent, reps = min(best, took), spent + took, reps + 1
    torch.set_num_threads(old)
    return 2 * size**3 / best / 1e9


def summary_line(info: dict[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores ({info['threads']} threads), flags: "
        f"{' '.join(info['matmul_flags']) or '-'}; auto -> {info['auto_dtype']}"
    )
