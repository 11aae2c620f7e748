"""The serve batcher: full batches from clients that resubmit together, no wait for a client alone."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

from metaconf.serving.batching import Batcher


def _echo_slowly(items):
    time.sleep(0.02)  # the engine's work on the batch
    return [f"answer {i}" for i in items]


async def _clients(batcher: Batcher, clients: int, rounds: int, stagger: float) -> list[str]:
    """`clients` closed-loop clients; after each answer, client c waits c x `stagger` before asking again (the
    HTTP round trips of answered clients spread their next requests over time)."""

    async def client(c: int) -> list[str]:
        answers = []
        for k in range(rounds):
            answers.append(await batcher.submit(f"{c}.{k}"))
            await asyncio.sleep(c * stagger)
        return answers

    rows = await asyncio.gather(*(client(c) for c in range(clients)))
    return [a for row in rows for a in row]


def test_32_clients_that_resubmit_together_form_one_batch_of_32():
    """Arrivals spread over 155 ms with 5 ms gaps: a fixed 100 ms wait from the first arrival would cut each round
    in two; the batcher expects the 32 it just answered and keeps collecting while they keep arriving."""
    batcher = Batcher(_echo_slowly, max_batch=32, max_wait=0.1)
    batcher.start()
    try:
        answers = asyncio.run(_clients(batcher, 32, rounds=4, stagger=0.005))
    finally:
        batcher.close(10)
    assert sorted(answers) == sorted(f"answer {c}.{k}" for c in range(32) for k in range(4))
    assert batcher.batch_sizes[32] >= 3, batcher.batch_sizes  # every round after the first (which may split)


def test_halves_that_alternate_merge_into_one_batch():
    """Under load a round splits: 16 are answered while 16 more queue. The worker then expects all 32 (the batch it
    answered plus those that were waiting before it answered), so the queued 16 wait for the answered 16 to come
    back and go as one batch."""
    entered, opened = threading.Event(), threading.Event()

    def gated(items):
        if not opened.is_set():
            entered.set()
            assert opened.wait(30)
        return _echo_slowly(items)

    batcher = Batcher(gated, max_batch=32, max_wait=0.03)
    batcher.last_batch = 16  # as after a round of 16: the first 16 form one batch

    async def run() -> list[str]:
        async def client(c: int, start: asyncio.Event | None) -> list[str]:
            if start is not None:
                await start.wait()
            answers = []
            for k in range(3):
                answers.append(await batcher.submit(f"{c}.{k}"))
                await asyncio.sleep((c % 16) * 0.004)  # resubmits spread over 60 ms, 4 ms apart
            return answers

        late = asyncio.Event()
        tasks = [asyncio.create_task(client(c, None)) for c in range(16)]
        tasks += [asyncio.create_task(client(c, late)) for c in range(16, 32)]
        await asyncio.to_thread(entered.wait, 30)  # the first 16 are in the engine
        late.set()
        while batcher._queue.qsize() < 16:  # the other 16 queue behind them
            await asyncio.sleep(0.005)
        opened.set()
        return [a for row in await asyncio.gather(*tasks) for a in row]

    batcher.start()
    try:
        answers = asyncio.run(run())
    finally:
        batcher.close(10)
    assert len(answers) == 96
    # 16 (the first), 32 twice (the queued 16 with the 16 answered before them), 16 (the late ones' last round)
    assert batcher.batch_sizes == {16: 2, 32: 2}, batcher.batch_sizes


class _RecordingQueue(queue.Queue):
    """Records the timeout of each blocking get the worker makes after the first item of a batch."""

    def __init__(self, maxsize: int):
        super().__init__(maxsize)
        self.timed_gets: list[float] = []

    def get(self, block=True, timeout=None):
        if timeout is not None:
            self.timed_gets.append(timeout)
        return super().get(block, timeout)


def test_a_lone_client_never_waits_for_company():
    """One client asking in turn: after its first answer the worker expects one request and goes at once (it never
    blocks waiting for a second), so batching adds no latency at concurrency 1."""
    batcher = Batcher(_echo_slowly, max_batch=32, max_wait=0.01)
    batcher._queue = _RecordingQueue(256)
    batcher.start()
    try:
        first = asyncio.run(_clients(batcher, 1, rounds=1, stagger=0))
        waits_before = len(batcher._queue.timed_gets)
        answers = asyncio.run(_clients(batcher, 1, rounds=5, stagger=0))
    finally:
        batcher.close(10)
    assert first == ["answer 0.0"] and answers == [f"answer 0.{k}" for k in range(5)]
    assert waits_before >= 1  # before anything was answered it did wait (it expected a full batch)
    assert len(batcher._queue.timed_gets) == waits_before  # afterwards: no timed wait at all
    assert batcher.batch_sizes == {1: 6} and batcher.expected == 1 and batcher.last_batch == 1
