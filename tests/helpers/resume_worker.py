"""A generation run for the kill-and-resume tests, meant to be started as a subprocess (and possibly killed).

    python resume_worker.py --kind scripted|hf --store S --out RESULTS.json --calls CALLS.jsonl
                            [--model DIR] [--prompts 30] [--n 3] [--max-new-tokens 6] [--delay 0.005]
                            [--batch-size 4] [--max-batch-tokens N] [--stall-after-batches K]

Every completion the engine is asked for is appended to CALLS (one JSON line [prompt text, sample index]) before
the engine produces it. With --stall-after-batches K the run hangs (sleeping) inside batch K+1, after producing it
but before it is stored: a guaranteed moment, mid-run, at which a test can kill it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path


def prompts(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Question {i}: what is {i} plus {i * 3}?"}] for i in range(count)]


def scripted_output(messages: list[dict[str, str]], sample: int) -> str:
    digest = hashlib.sha256(f"{messages[-1]['content']}|{sample}".encode()).hexdigest()
    return f"answer {int(digest[:4], 16) % 97} ({digest[4:10]})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["scripted", "hf"], required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calls", required=True)
    ap.add_argument("--model")
    ap.add_argument("--prompts", type=int, default=30)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=6)
    ap.add_argument("--delay", type=float, default=0.005)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-batch-tokens", type=int)
    ap.add_argument("--stall-after-batches", type=int)
    args = ap.parse_args(argv)

    from metaconf.engines.base import prompt_text

    if args.kind == "scripted":
        from metaconf.engines.scripted import ScriptedEngine

        engine = ScriptedEngine(
            scripted_output, store=args.store, delay=args.delay, batch_size=args.batch_size, quiet=True
        )
    else:
        from metaconf.engines.hf import HFEngine

        extra = {"max_batch_tokens": args.max_batch_tokens} if args.max_batch_tokens else {}
        engine = HFEngine(model=args.model, store=args.store, quiet=True, device="cpu", **extra)

    original = engine._generate_batch
    done = 0

    def logged(requests, params):
        nonlocal done
        with open(args.calls, "a", encoding="utf-8") as f:
            for r in requests:
                for s in r.sample_indices:
                    f.write(json.dumps([prompt_text(r.messages), s]) + "\n")
        result = original(requests, params)
        done += 1
        if args.stall_after_batches is not None and done > args.stall_after_batches:
            while True:  # produced but not stored: the test kills us here at the latest
                time.sleep(1)
        return result

    engine._generate_batch = logged
    results = engine.generate(
        prompts(args.prompts), n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=7
    )
    payload = [[c.to_dict() for c in row] for row in results]
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
