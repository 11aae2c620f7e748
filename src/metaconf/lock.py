"""One `metaconf run` per run folder: a lock file that a second run refuses on, naming the holder.

Two runs on one folder would compute (and bill) every batch twice and train the same adapter into the same
folder at the same time. The lock is an exclusive `flock` on `RUN/.lock`, which holds the holder's pid, host and
start time for the message. The kernel drops a flock when its process dies, however it dies (SIGKILL included),
so a lock file left by a killed run is detected as stale and taken over. flock is advisory and local: runs on
two machines sharing a network filesystem may not see each other's lock on every filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metaconf.errors import MetaconfError

LOCK_NAME = ".lock"


class RunFolderBusy(MetaconfError):
    """Another live process holds the run folder."""


class RunLock:
    """An exclusive lock on a run folder, held from `acquire()` until `release()` (or the process ends)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock or raise RunFolderBusy naming the holder; returns the stale holder's record when a lock
        left by a dead process was taken over (None otherwise)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking (documented)
            return None
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise MetaconfError(
                    f"{self.path.parent}: cannot create the run folder's lock file ({exc.strerror or exc})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunFolderBusy(
                    f"{self.path.parent}: in use by another metaconf run (pid {holder.get('pid', '?')} on host "
                    f"{holder.get('host', '?')}, since {holder.get('since', '?')}); wait for it to finish or use "
                    f"another --out"
                ) from None
            # the file may have been unlinked by a holder releasing it between our open and our flock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(fd) or None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "argv": sys.argv[:4],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return stale

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode (see acquire)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder record written in the lock file ({} when empty or unreadable)."""
    try:
        data = os.pread(fd, 4096, 0)
        record = json.loads(data.decode("utf-8", "replace") or "{}")
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def holding(run_dir: str | Path, what: str = "run folder", create: bool = False) -> Iterator[RunLock]:
    """The lock of a run folder a command writes into (train, build-data, report), held for the whole command: a
    folder in use by a live run is refused at once; a lock left by an ended run is taken over, said on stderr.
    `what` names the flag that gave the folder in errors; without `create`, a missing folder is refused."""
    from metaconf.names import check_folder

    check_folder(run_dir, what)
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise MetaconfError(f"{run_dir}: not a folder")
    if not create and not Path(run_dir).is_dir():
        raise MetaconfError(f"{run_dir}: no such run folder")
    lock = RunLock(run_dir)
    stale = lock.acquire()
    if stale:
        print(
            f"metaconf: took over the lock of an ended run (pid {stale.get('pid')} on host {stale.get('host')})",
            file=sys.stderr,
            flush=True,
        )
    try:
        yield lock
    finally:
        lock.release()
