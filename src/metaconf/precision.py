"""Which number format the local model runs in: fp32, or bf16 where the hardware has bf16 matrix units.

On a CPU with AMX-BF16 or AVX512-BF16, oneDNN runs bf16 matmuls 2-6x faster than fp32; on an AVX2-only CPU bf16
is emulated and several times *slower* than fp32. So `auto` looks at the CPU's flags (Linux /proc/cpuinfo, else
what torch reports) and picks bf16 only where the units exist; GPUs get bf16 where supported (fp16 on older ones).
The engine, the frozen-layer cache and LoRA training all follow the one choice (`model.dtype` in the study config).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES = ("float32", "bfloat16", "float16")
PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # training's words for them
CPUINFO = Path("/proc/cpuinfo")
# When set, these (space-separated) flags stand for the CPU's: the test suite pins them so that `auto` means fp32
# on every machine (its exact-equality tests assume fp32), and its subprocesses inherit that.
FLAGS_ENV = "METACONF_CPU_FLAGS"
# x86 flags (as Linux names them) of units that run bf16 matmuls natively, best first
BF16_UNITS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class DtypeChoice:
    """The resolved dtype, what was asked for, and why (printed once, recorded in the run folder)."""

    dtype: str  # float32 | bfloat16 | float16
    requested: str
    device: str  # cpu | cuda
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @property
    def precision(self) -> str:
        """The same choice in the Trainer's words (fp32 | bf16 | fp16): LoRA training follows it."""
        return PRECISION_OF_DTYPE[self.dtype]

    @property
    def torch(self):
        """The same choice as a torch dtype (the engine's weights, the frozen-layer cache)."""
        return torch_dtype(self.dtype)

    def describe(self) -> str:
        return f"dtype {self.dtype} on {self.device} ({self.reason})"


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The CPU flags in /proc/cpuinfo text: x86 `flags` lines and ARM `Features` lines (first processor)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def _torch_cpu_flags() -> frozenset[str]:
    """What torch itself can tell about bf16 units, for systems without /proc/cpuinfo (macOS, Windows)."""
    import torch

    flags = {torch.backends.cpu.get_cpu_capability().lower()}
    init_amx = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
    if init_amx is not None and init_amx():  # true only where AMX tiles exist (and the OS allows them)
        flags.add("amx_bf16")
    return frozenset(flags)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags: $METACONF_CPU_FLAGS if set, else /proc/cpuinfo where it exists, else torch's."""
    if os.environ.get(FLAGS_ENV) is not None:
        return frozenset(os.environ[FLAGS_ENV].split())
    try:
        flags = parse_cpu_flags(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        flags = frozenset()
    return flags or _torch_cpu_flags()


def cpu_bf16_unit(flags: Iterable[str]) -> str | None:
    """The best bf16 matrix unit among `flags` (amx_bf16, avx512_bf16), or None (AVX2-only and others)."""
    have = set(flags)
    return next((unit for unit in BF16_UNITS if unit in have), None)


def choose_dtype(
    requested: str = "auto",
    *,
    device: str | None = None,
    flags: Iterable[str] | None = None,
    cuda_bf16: bool | None = None,
) -> DtypeChoice:
    """Resolve `requested` (auto | float32 | bfloat16 | float16) for `device` (default: cuda if available, else
    cpu). `flags` and `cuda_bf16` default to this machine's; tests inject them."""
    if requested not in ("auto", *DTYPES):
        from metaconf.errors import ConfigError

        raise ConfigError(f"dtype: unknown {requested!r}; choose auto, float32, bfloat16 or float16")
    if device is None or (device == "cuda" and cuda_bf16 is None):
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and cuda_bf16 is None:
            cuda_bf16 = torch.cuda.is_bf16_supported()
    device = device.split(":")[0]
    if requested != "auto":
        return DtypeChoice(requested, requested, device, "as configured")
    if device == "cuda":
        if cuda_bf16:
            return DtypeChoice("bfloat16", "auto", device, "auto: the GPU supports bf16")
        return DtypeChoice("float16", "auto", device, "auto: the GPU has no bf16, so fp16")
    if device != "cpu":
        return DtypeChoice("float32", "auto", device, f"auto: {device} devices run fp32")
    unit = cpu_bf16_unit(cpu_flags() if flags is None else flags)
    if unit:
        return DtypeChoice("bfloat16", "auto", device, f"auto: the CPU has {unit}")
    return DtypeChoice("float32", "auto", device, "auto: the CPU has no bf16 matrix units (amx_bf16, avx512_bf16)")


def resolve_dtype(dtype: Any, device: str | None = None, engine: str = "dtype") -> DtypeChoice:
    """The one entry for every caller (engines, training, the frozen-layer cache): None / "auto" / a dtype name /
    a torch.dtype ("torch.bfloat16") / a DtypeChoice -> the DtypeChoice for `device`. An unknown name is an
    EngineError naming `engine` (the caller)."""
    if isinstance(dtype, DtypeChoice):  # resolved already (by the study): kept, with its reason
        return dtype
    name = "auto" if dtype is None else str(dtype).removeprefix("torch.")
    if name not in ("auto", *DTYPES):
        from metaconf.errors import EngineError

        raise EngineError(f"{engine}: unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return choose_dtype(name, device=device)


def run_record(choice: DtypeChoice | None) -> dict[str, Any] | None:
    """A choice as RUN/run_info.json records it: with the CPU's bf16 units when it runs on the CPU (None: remote)."""
    if choice is None:
        return None
    record: dict[str, Any] = choice.to_dict()
    if choice.device == "cpu":
        record["cpu_bf16_flags"] = sorted(set(BF16_UNITS) & cpu_flags())
    return record


_announced: set[tuple[str, str]] = set()  # (dtype, device) already printed


def announce(choice: DtypeChoice, quiet: bool = False) -> None:
    """Print a choice to stderr, once per process and (dtype, device): the engine that receives the study's resolved
    dtype does not print it again as "as configured"."""
    key = (choice.dtype, choice.device)
    if quiet or key in _announced:
        return
    _announced.add(key)
    print(f"metaconf: {choice.describe()}", file=sys.stderr, flush=True)


def announced(choice: DtypeChoice) -> None:
    """Take `choice` as printed already (by the parent of this process): `announce` then stays silent about it."""
    _announced.add((choice.dtype, choice.device))


def torch_dtype(name: str):
    """torch.float32 / bfloat16 / float16 for a resolved dtype name."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
