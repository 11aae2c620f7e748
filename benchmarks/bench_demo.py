"""Time `metaconf demo` from an empty run folder: per stage and in total (what BENCHMARKS.md records).

    python benchmarks/bench_demo.py [--repeats 1] [--json out.json]

The embedded model must already be converted (the first `metaconf` use converts it, ~40 s, not counted here).
Each repeat starts from a fresh folder, so nothing is served from a previous run's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="metaconf-demo-") as tmp:
        out = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "metaconf", "demo", "--out", str(out), "--quiet"], check=True)
        return json.loads((out / "timings.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()
    from metaconf.engines.embedded import embedded_model_dir

    embedded_model_dir()  # convert before timing
    runs = [run_once() for _ in range(args.repeats)]
    stages = list(runs[0])
    median = {s: statistics.median(r[s] for r in runs) for s in stages}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; repeats: {args.repeats}")
    for stage in stages:
        print(f"{stage:>12}: {median[stage]:7.1f} s  (runs: {', '.join(f'{r[stage]:.0f}' for r in runs)})")
    if args.json:
        args.json.write_text(json.dumps({"median": median, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
