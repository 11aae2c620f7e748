"""Run a function in a fresh child process and hand back its result: the memory the work held goes back to the
system when the child ends, whatever kept it resident (glibc's heap, library caches, tensors a library still holds).

The study runs each stage that loads a model this way (`Study(isolate=True)`, the default of `metaconf run`): one
process that trained six adapters and then evaluated them held ~2 GB more at the end than a fresh one doing the same
last stage, and no amount of `gc.collect()` / `malloc_trim` handed it back (BENCHMARKS.md, "Memory").

The child is started with `spawn` (a clean interpreter: no OpenMP threads or CUDA state copied from the parent), so
`fn` must be importable by name and its arguments picklable. The child's errors come back as themselves (a
`MetaconfError` is still printed as one line); Ctrl-C stops both; the child dies with its parent, so a killed run
leaves no process writing to its run folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from metaconf.errors import MetaconfError
from metaconf.memory import CHILD_PEAKS, PeakMeter

PR_SET_PDEATHSIG = 1  # prctl: the signal this process gets when its parent thread ends (Linux)
INTERRUPTED = 130  # the exit status of a child stopped by Ctrl-C


class ChildFailed(MetaconfError):
    """A child process ended without a result (killed, out of memory, crashed in C code)."""


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; elsewhere a no-op), and end now if the
    parent is already gone."""
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else a RuntimeError carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child(parent: int, conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """The child's body: run `fn`, send ("ok", (result, peak MiB)) or ("error", exception) back."""
    _die_with_parent(parent)
    meter = PeakMeter()
    try:
        result = fn(*args, **kwargs)
        meter.stop("child")
        conn.send(("ok", (result, meter.run_peak)))
    except KeyboardInterrupt:
        os._exit(INTERRUPTED)
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the parent, which raises it
        if not isinstance(exc, MetaconfError):
            traceback.print_exc()  # the child's traceback, where the user sees it; the parent raises the error
        conn.send(("error", _portable(exc)))
    finally:
        conn.close()


def call_in_child(fn: Callable[..., Any], *args: Any, name: str = "metaconf-child", **kwargs: Any) -> tuple[Any, float]:
    """`fn(*args, **kwargs)` run in a fresh (spawned) child process: its result and the child's peak resident
    memory in MiB. The child's exception is raised here; a child that ends without a result (killed, out of memory)
    is a `ChildFailed` naming its exit status; Ctrl-C waits for the child to stop, then raises KeyboardInterrupt."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(os.getpid(), send, fn, args, kwargs), name=name)
    process.start()
    send.close()  # the child holds the only sending end: its exit is an EOF here
    try:
        try:
            kind, value = receive.recv()
        except EOFError:
            kind, value = None, None
        process.join()
    except KeyboardInterrupt:
        process.join(timeout=60)  # it got the same Ctrl-C and is stopping
        if process.is_alive():
            process.kill()
            process.join()
        raise
    finally:
        receive.close()
    if kind == "ok":
        CHILD_PEAKS.append(value[1])  # the stage's PeakMeter counts it
        return value
    if kind == "error":
        raise value
    if process.exitcode in (INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    raise ChildFailed(
        f"{name}: its process ended without a result (exit status {process.exitcode}"
        f"{', killed by a signal' if (process.exitcode or 0) < 0 else ''}); rerun to resume"
    )
