"""Training speed on the embedded model (SmolLM2-135M-Instruct) on this machine's CPU.

    python benchmarks/bench_training.py throughput [--steps 4 --repeats 3]
        training tokens/s: our CPU defaults (LoraTrainConfig.for_cpu_demo()) vs TRL's defaults (bf16 autocast,
        gradient checkpointing, LoRA on every layer, TRL's own loss), a few optimizer steps each, median of repeats.
    python benchmarks/bench_training.py demo [--n-single 200 --n-pairwise 150 --n-multitask 200 --held-out 40]
        what `metaconf demo` trains: three adapters with for_cpu_demo(), wall time of each, then the parse rate of
        greedy replies to held-out prompts (answer and confidence / choice read back by metaconf.tasks parsers).

The training examples are built from the bundled questions with the real prompt templates; replies carry the gold
answer and a random confidence (the format, not the calibration, is what is measured here).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from metaconf.data import load_dataset
from metaconf.tasks import (
    format_pairwise_target,
    format_single_target,
    pairwise_messages,
    parse_pairwise,
    parse_single,
    single_messages,
)
from metaconf.training import LoraTrainConfig, train_lora

DATASETS = ("mmlu", "gsm8k", "triviaqa")


def questions(limit: int) -> list:
    qs = [q for name in DATASETS for q in load_dataset(name, limit=limit)]
    random.Random(0).shuffle(qs)
    return qs


def single_row(q, rng: random.Random) -> dict:
    reply = format_single_target(q.answers[0], rng.choice(range(5, 100, 10)) / 100, q)
    return {"messages": single_messages(q) + [{"role": "assistant", "content": reply}]}


def pair_row(q1, q2, rng: random.Random) -> dict:
    reply = format_pairwise_target(rng.choice([1, 2]), q1.answers[0], q2.answers[0], q1, q2)
    return {"messages": pairwise_messages(q1, q2) + [{"role": "assistant", "content": reply}]}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def trl_defaults(steps: int) -> LoraTrainConfig:
    """TRL/transformers-style defaults: bf16, gradient checkpointing, LoRA everywhere, TRL's loss."""
    return LoraTrainConfig(precision="bf16", gradient_checkpointing=True, fast_loss=False, group_by_length=False,
                           max_steps=steps, batch_size=8, save_steps=10_000, logging_steps=1)


def ours(steps: int) -> LoraTrainConfig:
    return LoraTrainConfig.for_cpu_demo().model_copy(update={"max_steps": steps, "save_steps": 10_000})


def throughput(args: argparse.Namespace) -> None:
    from metaconf.training.lora import build_trainer

    rng = random.Random(0)
    qs = questions(60)
    rows = [single_row(q, rng) for q in qs[:120]] + [pair_row(a, b, rng) for a, b in zip(qs[120:160], qs[140:180])]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        train = write_jsonl(Path(tmp) / "train.jsonl", rows)
        for name, make in (("ours (for_cpu_demo)", ours), ("TRL defaults (bf16 + grad ckpt)", trl_defaults)):
            rates = []
            for r in range(args.repeats):
                trainer = build_trainer(train, Path(tmp) / f"{name[:4]}{r}", "embedded", make(args.steps))
                trainer.args.include_num_input_tokens_seen = "non_padding"
                start = time.perf_counter()
                trainer.train()
                seconds = time.perf_counter() - start
                rates.append(trainer.state.num_input_tokens_seen / seconds)
                print(f"{name} repeat {r}: {trainer.state.num_input_tokens_seen} tokens in {seconds:.1f}s "
                      f"= {rates[-1]:.0f} tokens/s", flush=True)
            results[name] = statistics.median(rates)
    for name, rate in results.items():
        print(f"{name}: median {rate:.0f} training tokens/s over {args.repeats} repeats of {args.steps} steps")


def demo(args: argparse.Namespace) -> None:
    from metaconf.engines.hf import HFEngine
    from metaconf.engines.embedded import embedded_model_dir

    rng = random.Random(0)
    qs = questions(200)
    held, pool = qs[: args.held_out * 2], qs[args.held_out * 2:]
    single = [single_row(q, rng) for q in pool[: args.n_single]]
    pairs = [pair_row(pool[i], pool[-1 - i], rng) for i in range(args.n_pairwise)]
    multi = single[: args.n_multitask // 2] + pairs[: args.n_multitask - args.n_multitask // 2]
    rng.shuffle(multi)
    out = Path(args.out)
    config = LoraTrainConfig.for_cpu_demo()
    total = 0.0
    for cond, rows in (("single", single), ("pairwise", pairs), ("multitask", multi)):
        if not rows:
            continue
        train = write_jsonl(out / "training_sets" / cond / "train.jsonl", rows)
        start = time.perf_counter()
        adapter = train_lora(train, out / "training" / cond, "embedded", config)
        seconds = time.perf_counter() - start
        total += seconds
        log = [json.loads(x) for x in (out / "training" / cond / "log.jsonl").read_text().splitlines()]
        print(f"{cond}: {len(rows)} examples, {seconds:.0f}s, loss {log[0]['loss']:.2f} -> {log[-1]['loss']:.2f}",
              flush=True)
        engine = HFEngine(model=str(embedded_model_dir()), adapter=str(adapter), quiet=True)
        if cond in ("single", "multitask"):
            prompts = [single_messages(q) for q in held[: args.held_out]]
            texts = [c[0].text for c in engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=24)]
            ok = [parse_single(t, q).parsed for t, q in zip(texts, held)]
            print(f"  {cond} adapter, single prompts: parse rate {sum(ok) / len(ok):.3f}; e.g. {texts[0]!r}")
        if cond in ("pairwise", "multitask"):
            pq = list(zip(held[: args.held_out], held[args.held_out: 2 * args.held_out]))
            prompts = [pairwise_messages(a, b) for a, b in pq]
            texts = [c[0].text for c in engine.generate(prompts, n=1, temperature=0.0, max_new_tokens=40)]
            ok = [parse_pairwise(t, a, b).parsed for t, (a, b) in zip(texts, pq)]
            print(f"  {cond} adapter, pairwise prompts: parse rate {sum(ok) / len(ok):.3f}; e.g. {texts[0]!r}")
    print(f"training total: {total:.0f}s for three adapters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--steps", type=int, default=4)
    t.add_argument("--repeats", type=int, default=3)
    d = sub.add_parser("demo")
    d.add_argument("--n-single", type=int, default=200)
    d.add_argument("--n-pairwise", type=int, default=150)
    d.add_argument("--n-multitask", type=int, default=200)
    d.add_argument("--held-out", type=int, default=40)
    d.add_argument("--out", default="runs/bench_training_demo")
    args = parser.parse_args()
    throughput(args) if args.what == "throughput" else demo(args)


if __name__ == "__main__":
    main()
