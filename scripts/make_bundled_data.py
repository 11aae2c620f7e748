"""Build the bundled samples `src/metaconf/data/bundled/<name>.jsonl.gz` from the full files.

Usage: python scripts/make_bundled_data.py [--data-dir ../shared/data] [--n 300] [--seed 0]

Rule (see docs/data.md): from the default split, keep the questions whose question + options text is at most the
split's median length (the demo runs on a 2-core CPU where prompt length dominates the cost), then draw n of them
with a seeded hash of their ids. LegalBench draws round-robin over its tasks so the sample spans many of them.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from metaconf.data.ids import rank_key
from metaconf.data.loading import bundled_path, write_questions_jsonl
from metaconf.data.registry import DATASETS
from metaconf.data.schema import Question


def text_length(q: Question) -> int:
    """Characters of question plus options: what a prompt costs before the template."""
    return len(q.question) + sum(len(c) for c in q.choices or [])


def short_half(questions: list[Question]) -> list[Question]:
    """Questions no longer than the median length."""
    median = statistics.median(text_length(q) for q in questions)
    return [q for q in questions if text_length(q) <= median]


def draw(questions: list[Question], n: int, seed: int, group_key: str | None = None) -> list[Question]:
    """n questions by seeded id hash; with group_key, round-robin over the groups in meta[group_key]."""
    ranked = sorted(questions, key=lambda q: rank_key(seed, "bundle", q.id))
    if group_key is None:
        chosen = ranked[:n]
    else:
        groups: dict[str, list[Question]] = defaultdict(list)
        for q in ranked:
            groups[str(q.meta.get(group_key))].append(q)
        order = sorted(groups, key=lambda g: rank_key(seed, "bundle-group", g))
        chosen, depth = [], 0
        while len(chosen) < n and any(len(groups[g]) > depth for g in order):
            chosen += [groups[g][depth] for g in order if len(groups[g]) > depth][: n - len(chosen)]
            depth += 1
    return sorted(chosen, key=lambda q: q.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("names", nargs="*", default=list(DATASETS))
    args = parser.parse_args()
    for name in args.names:
        info = DATASETS[name]
        full = info.loader(args.data_dir / info.folder, info.default_split)
        pool = short_half(full)
        sample = draw(pool, args.n, args.seed, "task" if name == "legalbench" else None)
        write_questions_jsonl(sample, bundled_path(name))
        size = bundled_path(name).stat().st_size
        print(f"{name}: {len(full)} -> {len(pool)} at or under median -> {len(sample)} bundled, {size} bytes")


if __name__ == "__main__":
    main()
