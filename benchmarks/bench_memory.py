"""Peak resident memory (and time) of one demo-sized sampling job in a fresh process: the consistency stage's work.

    python benchmarks/bench_memory.py [--questions 24] [--n 10] [--json out.json]

Samples `--n` guided answers to each of `--questions` bundled MMLU-Pro questions with the embedded model and the
demo's evaluation settings (`evaluation.consistency_*`), as `metaconf demo`'s consistency stage does, without a
completion cache. Prints the process's peak resident memory before and after the job (VmHWM, MiB), the job's
peak, its wall time and a digest of the sampled texts (equal digests: the same samples). Run it from two checkouts
(PYTHONPATH=src) to compare their memory on the same job. For the whole demo use `/usr/bin/time -v metaconf demo`
and RUN/memory.json (per stage).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

MIB = 1024 * 1024


def peak_rss() -> int:
    """VmHWM in bytes (read here, not from metaconf.memory, so the script also runs on checkouts without it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("bench_memory.py needs Linux (/proc/self/status)")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import yaml

    from metaconf.data import load_dataset
    from metaconf.engines import get_engine
    from metaconf.study.cli import demo_config_text
    from metaconf.study.config import parse_config
    from metaconf.targets import sample_consistency
    from metaconf.tasks.sampling import Sampling
    from metaconf.tasks.task import Tasks

    config = parse_config(yaml.safe_load(demo_config_text()))
    questions = load_dataset("mmlu_pro", limit=args.questions)
    engine = get_engine("embedded", quiet=True)
    loaded = peak_rss() / MIB
    reset_peak()
    sampling = Sampling.consistency(config.evaluation, engine)
    start = time.perf_counter()
    records = sample_consistency(engine, questions, args.n, sampling, Tasks.of(config.targets).answer)
    seconds = time.perf_counter() - start
    job_peak = peak_rss() / MIB
    digest = hashlib.sha256(json.dumps([r.to_row() for r in records], sort_keys=True).encode()).hexdigest()[:16]
    result = {
        "questions": len(questions),
        "n": args.n,
        "peak_mib_loading": round(loaded),
        "peak_mib_job": round(job_peak),
        "seconds": round(seconds, 1),
        "samples_digest": digest,
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
