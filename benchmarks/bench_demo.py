"""Time `metaconf demo` from an empty run folder: per stage and in total (what BENCHMARKS.md records).

    python benchmarks/bench_demo.py [--repeats 1] [--dtypes auto,float32] [--json out.json]

With --dtypes, the demo's config is run once per dtype (`model.dtype` set, via `metaconf run`), alternating, so
`auto` and `float32` are measured on the same machine in one sitting: on a CPU with AMX / AVX512-BF16, `auto`
runs in bf16 (issue 15: at least 2x faster); on an AVX2-only CPU both run fp32 at the same speed.
The embedded model must already be converted (the first `metaconf` use converts it, ~40 s, not counted here).
Each repeat starts from a fresh folder, so nothing is served from a previous run's cache.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import machine_info, summary_line


def run_once(dtype: str | None) -> dict:
    import yaml

    from metaconf.study.cli import demo_config_text

    with tempfile.TemporaryDirectory(prefix="metaconf-demo-") as tmp:
        out = Path(tmp) / "demo"
        if dtype is None:
            command = ["demo"]
        else:
            config = yaml.safe_load(demo_config_text())
            config["model"]["dtype"] = dtype
            path = Path(tmp) / "demo.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            command = ["run", str(path)]
        subprocess.run([sys.executable, "-m", "metaconf", *command, "--out", str(out), "--quiet"], check=True)
        timings = json.loads((out / "timings.json").read_text())
        timings["dtype"] = json.loads((out / "run_info.json").read_text())["dtype"]["dtype"]
        return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dtypes", default=None, help="comma-separated model.dtype values, e.g. auto,float32")
    parser.add_argument("--json", type=Path, help="also write the timings here")
    args = parser.parse_args()
    import torch

    from metaconf.engines.embedded import embedded_model_dir

    embedded_model_dir()  # convert before timing
    info = machine_info(torch.get_num_threads())
    print(f"machine: {summary_line(info)}; repeats: {args.repeats}")
    dtypes = args.dtypes.split(",") if args.dtypes else [None]
    runs: dict[str, list[dict]] = {str(d): [] for d in dtypes}
    for _ in range(args.repeats):
        for dtype in dtypes:  # alternating, so a change in the machine's load hits every dtype alike
            runs[str(dtype)].append(run_once(dtype))
    result = {"machine": info, "runs": runs, "median": {}}
    for dtype, rows in runs.items():
        stages = [s for s in rows[0] if s != "dtype"]
        median = {s: statistics.median(r[s] for r in rows) for s in stages}
        result["median"][dtype] = median
        label = "demo" if dtype == "None" else f"model.dtype={dtype} (ran {rows[0]['dtype']})"
        print(label)
        for stage in stages:
            print(f"{stage:>12}: {median[stage]:7.1f} s  (runs: {', '.join(f'{r[stage]:.0f}' for r in rows)})")
    if len(runs) == 2 and "None" not in runs:
        (a, ma), (b, mb) = result["median"].items()
        print(f"{a} is {mb['total'] / ma['total']:.2f}x as fast as {b} (total time)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
