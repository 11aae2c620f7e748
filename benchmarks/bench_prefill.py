"""Grouped prefill against one pass padded to the longest prompt, interleaved in one process (the ratio holds on a
shared machine): one batch of `--batch` guided replies of a run folder's condition, the serve path (`Asker.answer`:
the single template, greedy, guided), with no completion store.

    PYTHONPATH=src python benchmarks/bench_prefill.py --run RUN [--condition multitask] [--batch 32] [--repeats 3]

Per repeat it times the batch once with one prefill pass (`GROUP_OVERHEAD_TOKENS` set so high that nothing is
split: the code path before grouping) and once grouped (the default), alternating which goes first; reports the
medians, their ratio, the prefill's real and padded suffix tokens, and checks that both give the same replies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from bench_serve import questions
from machine import machine_info, summary_line

ONE_PASS = 10**9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--condition", default="multitask")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from metaconf.engines import prefill
    from metaconf.serving.ask import Asker

    qs = questions(args.run, args.batch)
    asker = Asker(args.run, args.condition)
    asker.warm_up()
    asker.engine.store = None  # every repeat computes
    default = prefill.GROUP_OVERHEAD_TOKENS
    padding: dict[str, tuple[int, int]] = {}
    layout_of = prefill.layout_of

    def counted(engine, prompts):
        layout, ids = layout_of(engine, prompts)
        real = sum(layout.lengths)
        widths = sum(len(g) * layout.group_width(g) for g in layout.groups)
        padding[mode] = (real, widths)
        return layout, ids

    prefill.layout_of = counted
    times: dict[str, list[float]] = {"one pass": [], "grouped": []}
    replies: dict[str, list[str]] = {}
    for r in range(args.repeats):
        for mode in ("one pass", "grouped") if r % 2 == 0 else ("grouped", "one pass"):
            prefill.GROUP_OVERHEAD_TOKENS = ONE_PASS if mode == "one pass" else default
            t = time.perf_counter()
            rows = asker.answer(qs)
            times[mode].append(time.perf_counter() - t)
            replies.setdefault(mode, [row.raw for row in rows])
            print(f"repeat {r} {mode}: {times[mode][-1]:.2f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print(summary_line(machine_info(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))))
    for mode, ts in times.items():
        real, padded = padding[mode]
        median = statistics.median(ts)
        print(f"{mode}: median {median:.2f} s of {len(ts)}; prefill suffix tokens {real} real, {padded} run")
    print(f"one pass / grouped: {statistics.median(times['one pass']) / statistics.median(times['grouped']):.2f}x")
    same = replies["one pass"] == replies["grouped"]
    diff = [i for i, (a, b) in enumerate(zip(replies["one pass"], replies["grouped"])) if a != b]
    print("replies identical" if same else f"replies differ at {diff}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
