"""`metaconf ask --run RUN --condition NAME "QUESTION"`: answer + stated confidence from a run's model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ask", help="ask a run's model (one condition) a question: answer + stated confidence",
        description="Answer questions with one condition of a run (base, or a trained adapter / hosted model) "
        "through the run's engine, template and completion store. One QUESTION, or --file with a batch (fields "
        "mapped as in load_dataset; a gold answer is optional and, when given, graded).",
    )
    p.add_argument("question", nargs="?", help="the question (free text, open answer)")
    p.add_argument("--run", type=Path, required=True, help="a run folder made by `metaconf run` / `metaconf demo`")
    p.add_argument("--condition", default="multitask", help="which condition answers (default: multitask)")
    p.add_argument("--file", type=Path, help="a .jsonl / .json / .csv / .parquet file of questions")
    p.add_argument("--field", action="append", default=[], metavar="KEY=VALUE",
                   help="field mapping for --file, e.g. --field question=prompt --field choices=options "
                   "--field answer_type=mc (keys as in load_dataset)")
    p.add_argument("--out", type=Path, help="with --file: write one JSON object per line here")
    p.add_argument("--json", action="store_true", help='print {"answer": str, "confidence": float} per question')
    p.add_argument("--calibrated", action="store_true",
                   help="map the stated confidence through the run's fitted recalibration (base condition)")
    p.add_argument("--calibration", choices=("isotonic", "platt"), default="isotonic",
                   help="which fitted map --calibrated applies (default: isotonic)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_ask)


def _mapping(pairs: list[str]) -> dict[str, str]:
    from metaconf.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--field {pair!r}: expected KEY=VALUE, e.g. question=prompt")
        out[key.strip()] = value.strip()
    return out


def _ask(args: argparse.Namespace) -> int:
    from metaconf.asking import ask
    from metaconf.errors import ConfigError
    from metaconf.io import write_jsonl

    if (args.question is None) == (args.file is None):
        raise ConfigError("ask: give one QUESTION or --file, not both and not neither")
    if args.out and not args.file:
        raise ConfigError("ask: --out needs --file")
    if args.file:
        from metaconf.data.files import load_file

        questions = load_file(str(args.file), answers_required=False, **_mapping(args.field))
    else:
        questions = [args.question]
    results = ask(args.run, args.condition, questions, calibrated=args.calibrated, calibration=args.calibration,
                  quiet=args.quiet)
    if args.out:
        write_jsonl(args.out, [r.to_json() for r in results])
        print(f"wrote {len(results)} answers to {args.out}", file=sys.stderr)
        return 0
    for r in results:
        if args.json or args.file:
            print(json.dumps(r.to_json() if args.file else {"answer": r.answer or "", "confidence": r.confidence},
                             ensure_ascii=False))
        else:
            conf = "not stated" if r.confidence is None else f"{r.confidence * 100:.0f}%"
            label = " (calibrated)" if r.calibration else ""
            print(f"Answer: {r.answer or '(no answer read)'}\nConfidence{label}: {conf}")
    return 0
