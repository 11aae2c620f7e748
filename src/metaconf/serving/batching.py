"""A batching queue in front of one engine: requests that arrive together are answered in one call.

The HTTP side is async and many requests wait at once; the engine is not thread-safe (one torch model) and is
fastest on a batch. So every request goes into one bounded queue, and one worker thread takes what is there (up to
`max_batch` items), answers them in one call, and hands each result back to the event loop of the request that
asked.

How long a batch waits for more: clients that were just answered send their next request over the following tens of
milliseconds (longer on a loaded machine), so a fixed wait after the *first* arrival cuts their batch in pieces. The
worker instead expects the clients it last answered plus the requests that were already waiting before it answered
them, and keeps collecting while fewer are there, for at most `max_hold` (20 x `max_wait` unless given). Once that
many are there it goes at once, with whatever else is already queued: one client alone (expecting itself) waits
only for its very first answer, and 32 clients that resubmit together form one batch of 32.

A full queue refuses at once (`QueueFull`, HTTP 429) rather than letting latency grow without bound; `close`
answers everything already queued, then stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class QueueFull(Exception):
    """The queue holds `max_queue` requests already."""


class Closed(Exception):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class _Pending:
    item: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = 0.0  # time.monotonic() when queued


_STOP = object()


class Batcher(Generic[Item, Result]):
    """Answers items through `answer(items) -> results` (same length, same order) in one worker thread.

    `max_hold` (default 20 x `max_wait`): the longest a batch waits for the requests the worker expects.
    `batch_sizes` counts the batches by size (what a test or a benchmark reads to see batching happen)."""

    def __init__(
        self,
        answer: Callable[[Sequence[Item]], Sequence[Result]],
        max_batch: int = 32,
        max_wait: float = 0.01,
        max_queue: int = 256,
        max_hold: float | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait < 0 or (max_hold is not None and max_hold < 0):
            raise ValueError("batcher: max_batch and max_queue must be >= 1, max_wait and max_hold >= 0")
        self.answer = answer
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_hold = 20 * max_wait if max_hold is None else max_hold
        self.last_batch = max_batch  # the size of the batch last answered (before any: a full one is expected)
        self.answered_at = float("-inf")  # when it was answered
        self.expected = max_batch  # the batch the worker collects for now
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._work, name="metaconf-engine", daemon=True)
        self._closed = False
        self.batch_sizes: Counter[int] = Counter()

    def start(self) -> None:
        self._thread.start()

    async def submit(self, item: Item) -> Result:
        """The result for one item; raises QueueFull (queue full), Closed (shutting down), or what `answer` raised.
        Cancelling the await (a timeout) drops the item if the worker has not taken it yet."""
        if self._closed:
            raise Closed("the server is shutting down")
        loop = asyncio.get_running_loop()
        pending = _Pending(item, loop.create_future(), loop, time.monotonic())
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise QueueFull(f"{self._queue.maxsize} requests are waiting already") from None
        return await pending.future

    def close(self, timeout: float | None = None) -> None:
        """Take no new items, answer those queued, stop the worker (waits up to `timeout` seconds for it)."""
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # -- the worker thread ---------------------------------------------------------------------------------------
    def _take(self) -> tuple[list[_Pending], bool]:
        """The next batch (blocking for its first item), and whether the stop marker was reached."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        self.expected = self._expect(first)
        hold_until = time.monotonic() + self.max_hold
        while len(batch) < self.max_batch:
            # short of the expected batch: wait for the next arrival (up to the hold); else take only what is queued
            left = hold_until - time.monotonic() if len(batch) < self.expected else 0.0
            try:
                got = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if got is _STOP:
                return batch, True
            batch.append(got)
        return batch, False

    def _work(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take()
            live = [p for p in batch if not p.future.cancelled()]  # a request that timed out waiting is dropped
            if not live:
                continue
            self.batch_sizes[len(live)] += 1
            self._answer(live)

    def _expect(self, first: _Pending) -> int:
        """How many requests to collect: the clients last answered (likely to ask again) plus the requests that were
        already waiting before they were answered (other clients). A request that arrived after the last answer
        may be one of those clients coming back, so it is not counted twice: a lone client expects itself only."""
        with self._queue.mutex:
            waiting = [p for p in self._queue.queue if p is not _STOP]
        earlier = sum(1 for p in [first, *waiting] if p.arrived < self.answered_at)
        return max(1, min(self.max_batch, self.last_batch + earlier))

    def _answer(self, live: list[_Pending]) -> None:
        """Answer one batch and settle each request's future (every request gets the error if `answer` raised)."""
        try:
            results = list(self.answer([p.item for p in live]))
            self.last_batch, self.answered_at = len(live), time.monotonic()  # before any client hears back
            if len(results) != len(live):
                raise RuntimeError(f"batcher: {len(live)} items, {len(results)} results")
        except Exception as exc:  # every request of the batch gets the error (the HTTP side answers 500)
            for p in live:
                _hand_back(p, None, exc)
            return
        for p, result in zip(live, results, strict=True):
            _hand_back(p, result, None)


def _hand_back(p: _Pending, result: Any, error: BaseException | None) -> None:
    """Settle a request's future on its own event loop (a loop already closed has no one waiting)."""
    with contextlib.suppress(RuntimeError):
        p.loop.call_soon_threadsafe(_settle, p.future, result, error)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile (timed out)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
