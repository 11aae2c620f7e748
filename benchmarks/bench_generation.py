"""Generation benchmark: HFEngine in fp32 and bf16, side by side, vs a naive `model.generate(num_return_sequences=n)`
loop, and (with --vllm-python, the vLLM environment `make vllm` builds) vLLM offline and `vllm serve` + the OpenAI
engine.

64 MMLU-Pro questions, an answer-only multiple-choice prompt, n=10 samples, up to 16 new tokens, T=1, on the
embedded model (or --model), once per --dtypes entry. Reports the machine (CPU model, its matmul flags from lscpu,
what `model.dtype: auto` picks there), and per dtype: wall time, generated tokens/s, the fraction of this
machine's measured matmul rate *in that dtype* reached on the minimal work, and the speed-up over the naive loop
(timed in the first dtype only), where

    minimal FLOPs = 2 * non-embedding params * (distinct prompt tokens + generated tokens)

(each distinct prompt prefilled once, each generated token decoded once; attention and the LM head are not
counted, so the fraction is conservative). Medians over --repeats.

    python benchmarks/bench_generation.py [--dtypes float32,bfloat16] [--repeats 3] [--json out.json]
        [--naive-limit 64] [--vllm-python .venv-vllm/bin/python]

On a CPU without bf16 units (AVX2 only) bf16 is emulated and many times slower: use --questions 8 --repeats 1
there (or --dtypes float32).

--guided instead times guided against free sampling on one job: the project's `single` template (answer letter
and confidence) on the same questions, n samples each, the same token limit, with and without the guide derived
from the template (tasks/guides.py). Reports both times, generated tokens and the time per generated token.

    python benchmarks/bench_generation.py --guided [--repeats 3] [--questions 64] [--n 10]

vLLM runs in its own environment: the offline engine in a subprocess of that Python (this script with
--part vllm-offline), the server as `vllm serve` on 127.0.0.1, sampled by the OpenAI engine from this process.
Their model-loading / server-start times are reported apart from the sampling times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import machine_info, matmul_gflops, summary_line

LETTERS = "ABCDEFGHIJKLMNOP"
RAW_MMLU_PRO = Path("/work/shared/data/mmlu_pro/mmlu_pro_test_data.json")


def load_questions(limit: int) -> list[tuple[str, list[str]]]:
    """(question, options) for the first `limit` MMLU-Pro questions: the bundled sample, else the raw file."""
    try:
        from metaconf.data import load_dataset

        return [(q.question, list(q.choices or [])) for q in load_dataset("mmlu_pro", limit=limit)]
    except Exception:  # the bundled sample is not there yet: read the raw benchmark file
        rows = json.loads(RAW_MMLU_PRO.read_text())[:limit]
        return [(r["question"], list(r["options"])) for r in rows]


def answer_messages(question: str, options: list[str]) -> list[dict[str, str]]:
    lines = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    text = (
        "Answer the following multiple-choice question. Answer with the letter only.\n\n"
        f"Question: {question}\n{lines}\nAnswer:"
    )
    return [{"role": "user", "content": text}]


def non_embedding_params(model) -> int:
    emb = {id(p) for p in model.get_input_embeddings().parameters()}
    out = model.get_output_embeddings()
    if out is not None:
        emb |= {id(p) for p in out.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def run_engine(engine, prompts, n: int, max_new: int, seed: int) -> tuple[float, int]:
    engine._ids.clear()  # tokenization is part of the measured work
    t = time.perf_counter()
    out = engine.generate(prompts, n=n, temperature=1.0, max_new_tokens=max_new, seed=seed)
    elapsed = time.perf_counter() - t
    return elapsed, sum(c.completion_tokens for comps in out for c in comps)


def run_naive(model, tokenizer, prompts, n: int, max_new: int, seed: int) -> tuple[float, int]:
    """The loop people write first: one generate call per question with num_return_sequences=n."""
    import torch

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    t = time.perf_counter()
    generated = 0
    with torch.inference_mode():
        for messages in prompts:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            out = model.generate(
                **ids,
                do_sample=True,
                num_return_sequences=n,
                max_new_tokens=max_new,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                pad_token_id=tokenizer.pad_token_id or eos,
            )
            new = out[:, ids["input_ids"].shape[1] :]
            for row in new.tolist():  # tokens up to and including the first EOS
                generated += next((i + 1 for i, tok in enumerate(row) if tok == eos), len(row))
    return time.perf_counter() - t, generated


def vllm_env() -> dict[str, str]:
    """The vLLM environment's settings: metaconf from this checkout, a 1 GiB CPU KV cache, every core used."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_NO_USAGE_STATS": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


def vllm_offline_part(model: str, prompts, n: int, max_new: int, repeats: int) -> dict:
    """Run inside the vLLM environment: load time and per-repeat sampling time of VLLMEngine."""
    from metaconf.engines.vllm import VLLMEngine

    t = time.perf_counter()
    engine = VLLMEngine(model, max_model_len=2048, llm_options={"enforce_eager": True}, quiet=True)
    load = time.perf_counter() - t
    runs = []
    for r in range(repeats):
        t = time.perf_counter()
        out = engine.generate(prompts, n=n, temperature=1.0, max_new_tokens=max_new, seed=r)
        runs.append((time.perf_counter() - t, sum(c.completion_tokens for comps in out for c in comps)))
    return {"load_s": load, "runs": runs}


def run_vllm_offline(python: str, model: str, args) -> dict:
    cmd = [
        python,
        __file__,
        "--part",
        "vllm-offline",
        "--model",
        model,
        "--questions",
        str(args.questions),
        "--n",
        str(args.n),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(cmd, env=vllm_env(), stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_vllm_serve(python: str, model: str, prompts, args) -> dict:
    """`vllm serve` on a free local port; start time, then the OpenAI engine's sampling time per repeat."""
    import httpx

    from metaconf.engines.openai import OpenAIEngine

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the API server module: vllm-cpu's `vllm serve` script looks up a package named "vllm" and exits
    cmd = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--distributed-executor-backend",
        "uni",
    ]
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=vllm_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        start = time.perf_counter() - t
        # all prompts in flight at once, as a server wants; no per-request seed (vLLM's CPU backend dies on one)
        engine = OpenAIEngine(
            f"http://127.0.0.1:{port}/v1",
            model,
            api_key_env="",
            concurrency=len(prompts),
            batch_size=len(prompts),
            send_seed=False,
            timeout=600,
            quiet=True,
        )
        runs = []
        for r in range(args.repeats):
            t = time.perf_counter()
            out = engine.generate(prompts, n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=r)
            runs.append((time.perf_counter() - t, sum(c.completion_tokens for comps in out for c in comps)))
        return {"load_s": start, "runs": runs}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def emit(result: dict, path: Path | None) -> dict:
    """Print the result as JSON and, with --json, also write it (atomically)."""
    print(json.dumps(result, indent=2))
    if path:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)
    return result


def add_vllm(result: dict, name: str, measured: dict) -> None:
    t = statistics.median(x for x, _ in measured["runs"])
    tokens = statistics.median(k for _, k in measured["runs"])
    result.update(
        {
            f"{name}_load_s": round(measured["load_s"], 1),
            f"{name}_s": round(t, 2),
            f"{name}_generated_tokens": tokens,
            f"{name}_tokens_per_s": round(tokens / t, 1),
            f"{name}_vs_engine": round(t / result["engine_s"], 2),
        }
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder or hub name (default: the embedded model)")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated: float32, bfloat16, auto")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--naive-limit",
        type=int,
        default=None,
        help="time the naive loop on only the first N questions and scale its time to all "
        "(it is slow); default: all questions",
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--max-batch-tokens", type=int, default=None)
    parser.add_argument("--no-share-prefix", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--guided", action="store_true", help="time guided vs free sampling (see above)")
    parser.add_argument(
        "--vllm-python",
        default=None,
        help="the vLLM environment's python: also time vLLM offline and vllm serve + OpenAI engine",
    )
    parser.add_argument("--part", choices=["vllm-offline"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.guided:
        return guided_vs_free(args)

    if args.part == "vllm-offline":  # inside the vLLM environment
        prompts = [answer_messages(q, o) for q, o in load_questions(args.questions)]
        print(json.dumps(vllm_offline_part(args.model, prompts, args.n, args.max_new_tokens, args.repeats)))
        return {}

    import torch

    from metaconf.engines.embedded import embedded_model_dir
    from metaconf.engines.hf import HFEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    info = machine_info(threads)
    print(summary_line(info), file=sys.stderr, flush=True)
    prompts = [answer_messages(q, o) for q, o in load_questions(args.questions)]
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "questions": len(prompts),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "dtypes": {},
    }
    for k, dtype in enumerate(args.dtypes.split(",")):
        engine_kw = dict(
            quiet=True, max_batch_tokens=args.max_batch_tokens, share_prefix=not args.no_share_prefix, dtype=dtype
        )
        engine = HFEngine(args.model, **engine_kw) if args.model else HFEngine.embedded(**engine_kw)
        naive = not args.skip_naive and k == 0
        key = dtype if dtype != "auto" else f"auto={engine.dtype_choice.dtype}"
        result["dtypes"][key] = bench_dtype(engine, prompts, args, threads, naive)
        result["model"] = engine.model_identity.split("#")[0]
    if args.vllm_python:  # compared with the HF engine in the first dtype
        first = next(iter(result["dtypes"].values()))
        model = args.model or str(embedded_model_dir())
        result["vllm"] = {"engine_s": first["engine_s"]}
        add_vllm(result["vllm"], "vllm_offline", run_vllm_offline(args.vllm_python, model, args))
        print(
            f"vllm offline: {result['vllm']['vllm_offline_s']} s (+{result['vllm']['vllm_offline_load_s']} s load)",
            file=sys.stderr,
        )
        add_vllm(result["vllm"], "vllm_serve", run_vllm_serve(args.vllm_python, model, prompts, args))
        print(
            f"vllm serve: {result['vllm']['vllm_serve_s']} s (+{result['vllm']['vllm_serve_load_s']} s start)",
            file=sys.stderr,
        )
    return emit(result, args.json)


def bench_dtype(engine, prompts, args: argparse.Namespace, threads: int, naive: bool) -> dict:
    """One engine (one dtype): median time over the repeats, its share of the matmul rate in that dtype."""
    dtype = engine.dtype_choice.dtype
    prompt_tokens = sum(len(engine.prompt_ids(p)) for p in prompts)
    n_params = non_embedding_params(engine.model)
    rate = matmul_gflops(threads, dtype)
    engine_runs, naive_runs = [], []
    for r in range(args.repeats):
        engine_runs.append(run_engine(engine, prompts, args.n, args.max_new_tokens, seed=r))
        print(f"{dtype} repeat {r}: engine {engine_runs[-1][0]:.1f} s, {engine_runs[-1][1]} tokens", file=sys.stderr)
        if naive:
            subset = prompts[: args.naive_limit] if args.naive_limit else prompts
            t, toks = run_naive(engine.model, engine.tokenizer, subset, args.n, args.max_new_tokens, seed=r)
            scale = len(prompts) / len(subset)
            naive_runs.append((t * scale, toks * scale))
            print(f"{dtype} repeat {r}: naive {t:.1f} s on {len(subset)} questions", file=sys.stderr)

    e_time = statistics.median(t for t, _ in engine_runs)
    e_tokens = statistics.median(k for _, k in engine_runs)
    flops = 2 * n_params * (prompt_tokens + e_tokens)
    result = {
        "distinct_prompt_tokens": prompt_tokens,
        "non_embedding_params": n_params,
        "matmul_gflops": round(rate, 1),
        "engine_s": round(e_time, 2),
        "engine_generated_tokens": e_tokens,
        "engine_tokens_per_s": round(e_tokens / e_time, 1),
        "minimal_gflop": round(flops / 1e9, 1),
        "engine_gflops": round(flops / e_time / 1e9, 1),
        "fraction_of_matmul_rate": round(flops / e_time / 1e9 / rate, 3),
    }
    if naive_runs:
        n_time = statistics.median(t for t, _ in naive_runs)
        n_tokens = statistics.median(k for _, k in naive_runs)
        result.update(
            {
                "naive_s": round(n_time, 2),
                "naive_generated_tokens": round(n_tokens),
                "naive_tokens_per_s": round(n_tokens / n_time, 1),
                "speedup": round(n_time / e_time, 2),
                "naive_questions_timed": args.naive_limit or len(prompts),
            }
        )
    return result


def guided_vs_free(args: argparse.Namespace) -> dict:
    """Free and guided sampling of the `single` task on the same questions, alternating, medians over repeats."""
    import torch

    from metaconf.data import load_dataset
    from metaconf.engines.hf import HFEngine
    from metaconf.tasks import generation_settings, single_messages
    from metaconf.tasks.guides import single_guide

    if args.threads:
        torch.set_num_threads(args.threads)
    engine_kw = dict(quiet=True, max_batch_tokens=args.max_batch_tokens, share_prefix=not args.no_share_prefix)
    engine = HFEngine(args.model, **engine_kw) if args.model else HFEngine.embedded(**engine_kw)
    questions = load_dataset("mmlu_pro", limit=args.questions)
    prompts = [single_messages(q) for q in questions]
    guides = [single_guide(q) for q in questions]
    settings = generation_settings("single", guided=True)  # one token limit for both, the guided one
    engine.guides()  # the tokenizer conversion (~1 s, once per engine) is not part of a job
    runs: dict[str, list[tuple[float, int]]] = {"free": [], "guided": []}
    for r in range(args.repeats):
        for mode in ("free", "guided"):
            engine._ids.clear()
            t = time.perf_counter()
            out = engine.generate(
                prompts, n=args.n, temperature=1.0, seed=r, guide=guides if mode == "guided" else None, **settings
            )
            runs[mode].append((time.perf_counter() - t, sum(c.completion_tokens for cs in out for c in cs)))
            print(f"repeat {r}: {mode} {runs[mode][-1][0]:.1f} s, {runs[mode][-1][1]} tokens", file=sys.stderr)
    med = {m: (statistics.median(t for t, _ in v), statistics.median(k for _, k in v)) for m, v in runs.items()}
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "model": engine.model_identity,
        "questions": len(prompts),
        "n": args.n,
        "repeats": args.repeats,
        "max_new_tokens": settings["max_new_tokens"],
        "free_s": round(med["free"][0], 2),
        "free_tokens": med["free"][1],
        "guided_s": round(med["guided"][0], 2),
        "guided_tokens": med["guided"][1],
        "guided_over_free_time": round(med["guided"][0] / med["free"][0], 3),
        "guided_over_free_time_per_token": round(
            (med["guided"][0] / med["guided"][1]) / (med["free"][0] / med["free"][1]), 3
        ),
        "runs": {m: [[round(t, 2), k] for t, k in v] for m, v in runs.items()},
    }
    return emit(result, args.json)


if __name__ == "__main__":  # the guard also keeps vLLM's engine processes from rerunning the benchmark
    main()
