"""Training speed on the embedded model (SmolLM2-135M-Instruct) on this machine's CPU.

    python benchmarks/bench_training.py throughput [--steps 4 --repeats 3] [--variants fp32,bf16-weights,...] [--json F]
        training steps/s and tokens/s of our CPU defaults (LoraTrainConfig.for_cpu_demo()) in fp32, bf16 with bf16
        base weights and bf16 autocast, side by side, and optionally (variant `trl`) TRL's defaults through our trainer
        (bf16 autocast, gradient checkpointing, LoRA on every layer, TRL's own loss) or (variant `trl-plain`) a plain
        TRL SFTTrainer with its own defaults on the same data and the same LoRA adapter; a few optimizer steps each,
        the variants interleaved, median of repeats, and each one's speed relative to the last variant's. Each
        variant's fraction of this machine's matmul rate in its dtype is reached on the minimal work:
            2 x non-embedding params x tokens (forward) + 2 x params of the LoRA layers x tokens (backward to the
            lowest LoRA layer; the LM head and attention are not counted, so the fraction is conservative).
        The machine (CPU model, lscpu matmul flags, what `auto` picks) is printed first.
    python benchmarks/bench_training.py stage --run RUN [--dtype auto]
        a run's training stage (its training sets and LoRA settings, e.g. the demo's) timed with and without
        cache_frozen_layers, each from an empty folder.
    python benchmarks/bench_training.py parse --run RUN --out DIR [--condition single] [--set batch_size=2 ...]
        one condition of a run trained with some LoRA settings changed; the share of greedy replies to the run's
        evaluation questions whose confidence (single) / choice (pairwise) parses.

The throughput examples are built from the bundled questions with the real prompt templates; replies carry the
gold answer and a random confidence.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from machine import machine_info, matmul_gflops, summary_line

from metaconf.data import load_dataset
from metaconf.tasks import (
    format_pairwise_target,
    format_single_target,
    pairwise_messages,
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
    return LoraTrainConfig(
        precision="bf16",
        gradient_checkpointing=True,
        fast_loss=False,
        group_by_length=False,
        max_steps=steps,
        batch_size=8,
        save_steps=10_000,
        logging_steps=1,
    )


def ours(steps: int, precision: str = "fp32", bf16_mode: str = "weights") -> LoraTrainConfig:
    """The demo's settings at TRL's batch size, without the frozen-layer cache (its precompute happens before the
    timed steps; the `stage` mode measures it)."""
    return LoraTrainConfig.for_cpu_demo().model_copy(
        update={
            "max_steps": steps,
            "save_steps": 10_000,
            "batch_size": 8,
            "cache_frozen_layers": False,
            "precision": precision,
            "bf16_mode": bf16_mode,
        }
    )


VARIANTS = {
    "fp32": ("ours, fp32", lambda steps: ours(steps, "fp32")),
    "bf16-weights": ("ours, bf16 base weights (fp32 LoRA + AdamW)", lambda steps: ours(steps, "bf16", "weights")),
    "bf16-autocast": ("ours, bf16 autocast (fp32 weights)", lambda steps: ours(steps, "bf16", "autocast")),
    "trl": ("TRL defaults (bf16 + grad ckpt)", trl_defaults),
    "trl-plain": ("plain TRL SFTTrainer, its defaults, same LoRA adapter", None),
}


def minimal_flops_per_token(model) -> int:
    """2 x non-embedding params (forward) + 2 x params of the layers from the lowest LoRA layer up (backward)."""
    import re

    counts: dict[int, int] = {}
    lora_layers = set()
    for name, p in model.named_parameters():
        match = re.search(r"\.layers\.(\d+)\.", name)
        if match is None:
            continue  # embeddings, final norm, LM head
        if "lora_" in name:
            lora_layers.add(int(match.group(1)))
        else:
            counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + p.numel()
    lowest = min(lora_layers, default=len(counts))
    return 2 * sum(counts.values()) + 2 * sum(n for layer, n in counts.items() if layer >= lowest)


def plain_trl_trainer(train: Path, out: Path, steps: int):
    """TRL's SFTTrainer with its own defaults (bf16 autocast, gradient checkpointing, its own loss over every position,
    the model's own dtype) given only what makes it the same job as `ours`: the model, the data (prompt/completion),
    the batch size, the number of steps and the same LoRA adapter (rank, alpha, dropout, layers, modules)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from metaconf.engines.embedded import resolve_model
    from metaconf.training.data import load_chat_examples, to_prompt_completion
    from metaconf.training.lora import _lora_placement, lora_config

    path, config = resolve_model("embedded"), ours(steps)
    model = AutoModelForCausalLM.from_pretrained(path)
    layers, targets = _lora_placement(config, model)
    adapter = lora_config(config, layers, targets)
    data = Dataset.from_list([to_prompt_completion(m) for m in load_chat_examples(train)])
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=config.batch_size,
        max_steps=steps,
        seed=config.seed,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=adapter)


def time_variant(key: str, train: Path, out: Path, steps: int, rates: dict[str, float]) -> dict:
    """Train `steps` steps of variant `key`; its training tokens/s, steps/s and fraction of the matmul rate in its
    dtype (measured once per dtype into `rates`)."""
    import torch

    from metaconf.training.lora import LoraJob, build_trainer

    if key == "trl-plain":
        trainer, dtype = plain_trl_trainer(train, out, steps), "bfloat16"  # TRL's default: bf16 autocast
    else:
        config = VARIANTS[key][1](steps)
        trainer = build_trainer(LoraJob(train, out, "embedded", config))
        dtype = "bfloat16" if config.precision == "bf16" else "float32"
    if dtype not in rates:
        rates[dtype] = matmul_gflops(torch.get_num_threads(), dtype)
    trainer.args.include_num_input_tokens_seen = "non_padding"
    per_token = minimal_flops_per_token(trainer.model)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen
    return {
        "tokens_per_s": tokens / seconds,
        "steps_per_s": trainer.state.global_step / seconds,
        "fraction": per_token * tokens / seconds / 1e9 / rates[dtype],
        "dtype": dtype,
    }


def throughput(args: argparse.Namespace) -> None:
    """The variants interleaved (a repeat of each in turn, so a change in the machine's load hits all of them), medians
    over repeats; with several variants, each one's steps/s relative to the last one's in the same round."""
    import torch

    info = machine_info(torch.get_num_threads())
    print(summary_line(info), flush=True)
    rng = random.Random(0)
    qs = questions(60)
    rows = [single_row(q, rng) for q in qs[:120]] + [pair_row(a, b, rng) for a, b in zip(qs[120:160], qs[140:180])]
    keys, rates = args.variants.split(","), {}
    runs: dict[str, list[dict]] = {key: [] for key in keys}
    with tempfile.TemporaryDirectory() as tmp:
        train = write_jsonl(Path(tmp) / "train.jsonl", rows)
        for r in range(args.repeats):
            for key in keys:
                runs[key].append(time_variant(key, train, Path(tmp) / f"{key}{r}", args.steps, rates))
                m = runs[key][-1]
                print(
                    f"{VARIANTS[key][0]} repeat {r}: {m['steps_per_s']:.3f} steps/s, {m['tokens_per_s']:.0f} tokens/s, "
                    f"{m['fraction']:.1%} of the {m['dtype']} matmul rate",
                    flush=True,
                )
    results = {}
    for key in keys:
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(runs[key], runs[keys[-1]])]
        results[key] = {
            "name": VARIANTS[key][0],
            "steps_per_s": round(statistics.median(m["steps_per_s"] for m in runs[key]), 4),
            "tokens_per_s": round(statistics.median(m["tokens_per_s"] for m in runs[key]), 1),
            "fraction_of_matmul_rate": round(statistics.median(m["fraction"] for m in runs[key]), 3),
            f"speed_vs_{keys[-1]}": round(statistics.median(ratios), 2),
        }
        print(f"{results[key]['name']}: median {results[key]}", flush=True)
    summary = {"machine": info, "steps": args.steps, "repeats": args.repeats, "variants": results}
    summary["matmul_gflops"] = {d: round(r, 1) for d, r in rates.items()}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


def stage(args: argparse.Namespace) -> None:
    """A run's training stage (its three training sets and LoRA settings), timed with and without the cache of
    the frozen lower layers, each from an empty folder."""
    from metaconf.study.config import load_config
    from metaconf.training import train_conditions

    run = Path(args.run)
    training = load_config(run / "config.yaml").training
    conditions = [c for c in ("single", "pairwise", "multitask") if (run / "training_sets" / c).is_dir()]
    for cached in {"both": (True, False), "on": (True,), "off": (False,)}[args.cache]:
        configs = {c: training.lora_for(c).model_copy(update={"cache_frozen_layers": cached}) for c in conditions}
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "run"
            for cond in conditions:
                (copy / "training_sets" / cond).mkdir(parents=True)
                (copy / "training_sets" / cond / "train.jsonl").write_bytes(
                    (run / "training_sets" / cond / "train.jsonl").read_bytes()
                )
            start = time.perf_counter()
            train_conditions(copy, "embedded", training.lora, conditions, configs=configs, dtype=args.dtype)
            seconds = time.perf_counter() - start
            parts = {
                c: json.loads((copy / "training" / c / "train_config.json").read_text())["result"] for c in conditions
            }
        detail = ", ".join(f"{c} {r['train_runtime']:.0f}s/{r['global_step']} steps" for c, r in parts.items())
        print(f"cache_frozen_layers={cached}: {seconds:.0f}s for {len(conditions)} adapters ({detail})", flush=True)


def parse(args: argparse.Namespace) -> None:
    """Train one condition of a run with some LoRA settings changed, then read greedy replies to the run's
    evaluation questions: the share whose confidence (single task) or choice (pairwise task) parses."""
    import yaml

    from metaconf.engines import CompletionStore, get_engine
    from metaconf.evaluation import evaluate_pairwise, evaluate_single, make_pairs
    from metaconf.study.config import load_config
    from metaconf.study.runner import Study

    run, out = Path(args.run), Path(args.out)
    config = load_config(run / "config.yaml")
    changes = dict(item.split("=", 1) for item in args.set)
    base = config.training.lora_for(args.condition)
    lora = type(base).model_validate({**base.model_dump(), **{k: yaml.safe_load(v) for k, v in changes.items()}})
    study = Study(config, out / "study", quiet=True)
    study.stage_data()
    start = time.perf_counter()
    adapter = train_lora(run / "training_sets" / args.condition / "train.jsonl", out / "training", "embedded", lora)
    seconds = time.perf_counter() - start
    engine = get_engine("embedded", store=CompletionStore(out / "completions.sqlite"), adapter=adapter, quiet=True)
    report = {"condition": args.condition, "changes": changes, "train_s": round(seconds, 1)}
    tasks = {"single": ["single"], "pairwise": ["pairwise"]}.get(args.condition, ["single", "pairwise"])
    for task in tasks:
        read = {}
        for name, qs in study.eval_sets.items():
            if task == "single":
                rows = evaluate_single(engine, args.condition, qs)
                read[name] = sum(r["confidence"] is not None for r in rows) / len(rows)
            else:
                rows = evaluate_pairwise(
                    engine,
                    args.condition,
                    make_pairs(qs, config.evaluation.pairs_per_dataset, config.evaluation.seed),
                    {},
                )
                read[name] = sum(r["choice"] is not None for r in rows) / len(rows)
        report[f"{task}_read"] = {k: round(v, 3) for k, v in read.items()}
        report[f"{task}_read_all"] = round(sum(read.values()) / len(read), 3)
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--steps", type=int, default=4)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument(
        "--variants",
        default="fp32,bf16-weights,bf16-autocast",
        help=f"comma-separated, from {', '.join(VARIANTS)} (trl: ~14 min a repeat on 2 AVX2 cores); run "
        "interleaved; the last is the one the others are compared with",
    )
    t.add_argument("--json", type=Path, default=None, help="also write the summary here")
    d = sub.add_parser("stage")
    d.add_argument("--run", required=True, help="a run folder with training_sets/ (e.g. from `metaconf demo`)")
    d.add_argument("--cache", choices=("both", "on", "off"), default="both", help="which settings to time")
    d.add_argument("--dtype", default="auto", help="model.dtype for the training: auto, float32, bfloat16")
    p = sub.add_parser("parse")
    p.add_argument("--run", required=True, help="a run folder with training_sets/ and config.yaml")
    p.add_argument("--condition", default="single")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change a LoRA setting of the run's config (YAML value), e.g. --set batch_size=2",
    )
    p.add_argument("--out", required=True, help="a new folder for the adapter and its replies")
    args = parser.parse_args()
    {"throughput": throughput, "stage": stage, "parse": parse}[args.what](args)


if __name__ == "__main__":
    main()
