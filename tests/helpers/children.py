"""Functions a test runs in a child process through metaconf.processes.call_in_child (spawned children import them
by name, so they live in a module, not in a test)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from metaconf.errors import DataError
from metaconf.memory import MIB, current_rss


def hold(mib: int) -> dict:
    """Make `mib` MiB resident (every page written) and keep it referenced until this returns: the child's pid, its
    parent's and its resident size then."""
    block = np.empty(mib * MIB, dtype=np.uint8)
    block[::4096] = 1
    return {"pid": os.getpid(), "parent": os.getppid(), "rss_mib": current_rss() / MIB, "sum": int(block[::4096].sum())}


def fail_with_data_error(path: str) -> None:
    raise DataError(f"{path}: line 3: not JSON")


class _Unpicklable(Exception):
    def __init__(self, handle) -> None:  # an argument pickle cannot carry
        super().__init__("the handle broke")
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle this error")


def fail_unpicklably() -> None:
    raise _Unpicklable(lambda: None)


def die_by_signal() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_forever(pid_file: str) -> None:
    """Write this child's pid, then wait (the test kills the parent)."""
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.2)


if __name__ == "__main__":  # a parent for the kill test: `python -m helpers.children PIDFILE`
    from metaconf.processes import call_in_child

    call_in_child(sleep_forever, sys.argv[1])
