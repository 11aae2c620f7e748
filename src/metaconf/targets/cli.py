"""`metaconf build-data`: sample training answers, fit the calibration map and write the training sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build-data", help="build the SFT training sets (consistency -> calibrated targets -> JSONL)",
        description="Sample each training question's answer n times, fit the consistency -> accuracy map and "
                    "write RUN/training_sets/<condition>/ (HF chat JSONL, hosted JSONL, data cards). "
                    "Reruns reuse RUN/completions.sqlite.",
    )
    p.add_argument("--out", required=True, type=Path, help="the run folder")
    p.add_argument("--datasets", nargs="+", default=["mmlu_pro", "gsm8k", "triviaqa"],
                   help="registered dataset names or files (default: mmlu_pro gsm8k triviaqa)")
    p.add_argument("--per-dataset", type=int, default=50, help="training questions per dataset (default 50)")
    p.add_argument("--held-out", type=float, default=0.0,
                   help="fraction (0-1) of each dataset's questions kept out of training (default 0: use all)")
    p.add_argument("--model", default="embedded", help="'embedded' or a local model folder / hub id")
    p.add_argument("--config", type=Path, help="YAML file with TargetsConfig fields (see docs/tasks.md)")
    p.add_argument("--n-samples", type=int, help="override n_samples")
    p.add_argument("--seed", type=int, help="override seed")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import yaml
    from pydantic import ValidationError

    from metaconf.data import load_dataset, split_questions
    from metaconf.engines import get_engine
    from metaconf.errors import ConfigError
    from metaconf.targets.config import TargetsConfig
    from metaconf.io import write_text_atomic
    from metaconf.targets.stage import build_data

    raw = {}
    if args.config:
        if not args.config.is_file():
            raise ConfigError(f"{args.config}: no such file")
        raw = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{args.config}: must hold a mapping of TargetsConfig fields")
    for key in ("n_samples", "seed"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    try:
        config = TargetsConfig(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{args.config or 'build-data'}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    if args.per_dataset < 1:
        raise ConfigError("--per-dataset must be >= 1")
    questions = []
    for name in args.datasets:
        qs = load_dataset(name, limit=args.per_dataset)
        if args.held_out:
            qs, _ = split_questions(qs, float(args.held_out), seed=config.seed)
        questions += qs
    store = args.out / "completions.sqlite"
    engine = get_engine("hf", model=args.model, store=store)
    summary = build_data(args.out, engine, questions, config)
    for name, stats in summary["consistency"].items():
        print(f"{name:>10}: n={stats['n']} parse_rate={stats['parse_rate']:.3f} "
              f"accuracy={stats['accuracy']:.3f} mean_consistency={stats['mean_consistency']:.3f}")
    for name, card in summary["sets"].items():
        note = f" (EMPTY: {card['empty']})" if card.get("empty") else ""
        print(f"training set {name}: {card['n_examples']} examples -> {args.out / 'training_sets' / name}{note}")
    write_text_atomic(args.out / "build_data_summary.json", json.dumps(summary, indent=2) + "\n")
    return 0
