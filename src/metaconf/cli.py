"""The `metaconf` command. Each stage's module registers its own subcommand (`register(subparsers)`)."""

from __future__ import annotations

import argparse
import importlib
import sys

from metaconf import __version__
from metaconf.errors import MetaconfError

# (module, what it adds); each module defines register(subparsers) and keeps heavy imports inside its handlers
COMMAND_MODULES = [
    "metaconf.study.cli",  # run, demo
    "metaconf.data.cli",  # datasets
    "metaconf.targets.cli",  # build-data
    "metaconf.training.cli",  # train, merge
    "metaconf.evaluation.cli",  # evaluate
    "metaconf.report.cli",  # report
    "metaconf.ask_cli",  # ask
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metaconf",
        description="Teach language models to say how sure they are, and measure whether they can.",
        epilog="Start with `metaconf demo` (runs the whole study on an embedded model, offline, on a CPU).",
    )
    parser.add_argument("--version", action="version", version=f"metaconf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a stage not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MetaconfError as exc:
        print(f"metaconf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("metaconf: interrupted; everything finished so far is stored, rerun the same command to resume",
              file=sys.stderr)
        return 130
