"""`metaconf evaluate RUN`: (re)run the evaluation stages of an existing run folder from its config.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate every condition of a run folder (consistency, evaluate, baselines, metrics, report)",
        description="Evaluate base and trained conditions on the run's held-out and new-domain questions, then "
        "write metrics.json and the report. Uses RUN/config.yaml; completions already stored are reused.",
    )
    p.add_argument("run", type=Path, help="a run folder made by `metaconf run` or `metaconf demo`")
    p.add_argument("--no-report", action="store_true", help="stop after metrics.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from metaconf.study.config import load_config
    from metaconf.study.runner import Study

    config = load_config(args.run / "config.yaml")
    stages = ("consistency", "evaluate", "baselines", "metrics") + (() if args.no_report else ("report",))
    Study(config, args.run, quiet=args.quiet, source=str(args.run / "config.yaml")).run(stages)
    return 0
