"""Generate real model outputs for the grading fixture (tests/fixtures/grading/real_outputs.jsonl).

Samples SmolLM2-135M-Instruct (the embedded model) once per question at temperature 1 with a fixed seed, over
every registered dataset, with three prompt styles in turn: `plain` ("Answer with the letter only."), `answer`
(metaconf's answer template, "Reply as Answer: <...>") and `single` (answer + "Confidence: <0-100>").

The expected extraction and grade of each row are filled in BY HAND afterwards (fields `expected_answer`,
`expected_correct`, `note`); rerunning keeps the labels of rows whose question, style and raw text are unchanged
and leaves new rows unlabelled (null). Takes about 15 minutes on two busy shared CPU cores (one thread).

    python scripts/make_grading_fixture.py [--per-dataset 24] [--seed 0] [--out FILE.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from metaconf.data import Question, list_datasets, load_dataset
from metaconf.data.schema import LETTERS

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "src" / "metaconf" / "tasks" / "templates"
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "grading" / "real_outputs.jsonl"
STYLES = ("plain", "answer", "single")
PLAIN = {
    "mc": "{question}\n{choices}\n\nAnswer with the letter only.",
    "numeric": "{question}\n\nAnswer with the number only.",
    "open": "{question}\n\nAnswer with a short answer only.",
    "boolean": "{question}\n\nAnswer yes or no.",
}


def format_choices(q: Question) -> str:
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(q.choices or []))


def prompt_for(q: Question, style: str) -> str:
    """The user message for one question in one style."""
    if style == "plain":
        template = PLAIN[q.answer_type]
    else:
        template = yaml.safe_load((TEMPLATES / f"{style}.yaml").read_text())["user"][q.answer_type]
    return template.format(question=q.question, choices=format_choices(q))


def generate(prompts: list[str], seed: int, batch_size: int, max_new_tokens: int) -> list[str]:
    """One sampled completion per prompt (temperature 1), batched with left padding, shortest prompts first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from metaconf.engines.embedded import embedded_model_dir

    path = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    chats = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    order = sorted(range(len(chats)), key=lambda i: len(chats[i]))
    texts: list[str] = [""] * len(chats)
    began = time.perf_counter()
    torch.set_num_threads(1)  # the machine is shared: one thread avoids spinning against other jobs
    torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer([chats[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row, i in enumerate(idx):
            texts[i] = tokenizer.decode(out[row, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            print("ROW", json.dumps({"i": i, "raw": texts[i]}, ensure_ascii=False), flush=True)
        print(f"  {min(start + batch_size, len(order))}/{len(order)} ({time.perf_counter() - began:.0f} s)", flush=True)
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-dataset", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    rows = []
    for info in list_datasets():
        for k, q in enumerate(load_dataset(info.name, limit=args.per_dataset)):
            style = STYLES[k % len(STYLES)]
            rows.append({"dataset": info.name, "style": style, "question": q.to_dict(), "prompt": prompt_for(q, style)})
    began = time.perf_counter()
    texts = generate([r["prompt"] for r in rows], args.seed, args.batch_size, args.max_new_tokens)
    print(f"generated {len(texts)} answers in {time.perf_counter() - began:.0f} s")

    old = {}
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            old[(r["question"]["id"], r["style"], r["raw"])] = r
    out_lines = []
    for row, text in zip(rows, texts):
        previous = old.get((row["question"]["id"], row["style"], text), {})
        row["raw"] = text
        for key in ("expected_answer", "expected_correct", "note"):
            row[key] = previous.get(key)
        out_lines.append(json.dumps(row, ensure_ascii=False))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=".real_outputs-")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(out_lines) + "\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(out_lines)} rows)")


if __name__ == "__main__":
    main()
