"""Peak resident memory per stage, and the memory a finished stage can hand back to the system.

On Linux the kernel keeps a process's high-water mark of resident memory (VmHWM in /proc/self/status) and lets the
process reset it to the current resident size (writing "5" to /proc/self/clear_refs), so each stage's own peak is
exact: reset at its start, read at its end. Elsewhere only `resource.getrusage`'s peak since the process started is
available; a stage's figure is then the run's peak so far, and `PeakMeter.method` says so.

`PeakMeter.run_peak` keeps the whole run's peak (the largest of the stages' and of the time before the first). A
stage run in a child process (metaconf.processes) counts the child's own peak plus what the parent held meanwhile,
since both were resident at once; GNU time reports only the larger process of the two.
The resets do not lower what the kernel reports at exit: on the demo, GNU time's "Maximum resident set size"
equalled `memory.json`'s `peak` (4,677,156 kB = 4567.6 MiB, 2026-12-03).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1024 * 1024


def _status_kib(field: str) -> int | None:
    """A `VmXXX:   1234 kB` field of /proc/self/status in KiB (None where there is no such file or field)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss() -> int | None:
    """The process's resident memory now, in bytes (None where /proc is not available)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss() -> int:
    """The process's peak resident memory in bytes: VmHWM (since the last reset), else getrusage's peak (since the
    process started; ru_maxrss is in KiB on Linux and bytes on macOS)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak() -> bool:
    """Reset the kernel's high-water mark to the current resident size; False where this system cannot."""
    try:
        with CLEAR_REFS.open("w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Hand memory freed by the last stage back to the system: collect cycles (models hold some), then ask glibc to
    return its free heap pages (a no-op where the C library is not glibc). Peaks are unchanged; what stays resident
    between stages shrinks, so the next stage starts lower."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        trim = getattr(libc, "malloc_trim", None)
        if trim is not None:
            trim(0)
    except OSError:
        return


CHILD_PEAKS: list[float] = []  # the peak (MiB) of each child process this process ran (metaconf.processes)


class PeakMeter:
    """Peak resident memory of each stage of one run, in MiB: `start(stage)` before it, `stop(stage)` after it."""

    def __init__(self) -> None:
        self.before = peak_rss()  # the peak before the first stage: imports, data, the config
        self.resets = reset_peak()
        self.method = (
            "VmHWM, reset at each stage's start (/proc/self/clear_refs)"
            if self.resets
            else "getrusage ru_maxrss: the process's peak so far (this system cannot reset it per stage)"
        )
        self.stages: dict[str, float] = {}
        self.children: dict[str, float] = {}  # stages that ran work in child processes: the largest child's peak
        self._children_before = 0

    def start(self, stage: str) -> None:
        """A stage begins: its peak counts from the resident size now."""
        if self.resets:
            reset_peak()
        self._children_before = len(CHILD_PEAKS)

    def stop(self, stage: str) -> float:
        """A stage ended: its peak resident memory in MiB (recorded under its name). Where it ran work in child
        processes, the largest child's peak plus what this process holds now counts too (both were resident)."""
        own = peak_rss() / MIB
        children = CHILD_PEAKS[self._children_before :]
        if children:
            self.children[stage] = round(max(children), 1)
            own = max(own, max(children) + (current_rss() or 0) / MIB)
        self.stages[stage] = round(own, 1)
        return self.stages[stage]

    @property
    def run_peak(self) -> float:
        """The whole run's peak in MiB: the largest stage peak, or the peak before the first stage."""
        return max([round(self.before / MIB, 1), *self.stages.values()])

    def record(self) -> dict:
        """What memory.json holds: the method, the peak per stage and the run's peak (MiB)."""
        return {
            "unit": "MiB",
            "method": self.method,
            "stages": dict(self.stages),
            **({"child_processes": dict(self.children)} if self.children else {}),
            "before_stages": round(self.before / MIB, 1),
            "peak": self.run_peak,
        }
