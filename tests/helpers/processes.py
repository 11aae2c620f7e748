"""Killing a real process mid-run, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(
    proc: subprocess.Popen,
    ready: Callable[[], object],
    explain: Callable[[], str],
    poll: float = 0.01,
    hang_guard: float = 1800.0,
) -> None:
    """SIGKILL `proc` as soon as `ready()` is true (polled every `poll` seconds); AssertionError with `explain()` if
    the process ends first, or if nothing is ready after `hang_guard` seconds (a guard, not a time limit: the poll
    ends when `ready()` is). The process is always reaped."""
    deadline = time.monotonic() + hang_guard
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"the process ended (rc {proc.returncode}) before it could be killed: {explain()}")
            assert time.monotonic() < deadline, f"still not ready after {hang_guard:.0f} s: {explain()}"
            time.sleep(poll)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
