"""The `metaconf` command. Each stage's `cli` module lists its subcommands (`COMMANDS`, built by metaconf.flags)."""

from __future__ import annotations

import argparse
import importlib
import sys

from metaconf import __version__
from metaconf.errors import MetaconfError
from metaconf.flags import Command, dispatch
from metaconf.text import redact

# each module defines COMMANDS (metaconf.flags.Command) and keeps heavy imports inside its handlers
COMMAND_MODULES = [
    "metaconf.study.cli",  # run, demo, evaluate
    "metaconf.data.cli",  # datasets
    "metaconf.targets.cli",  # build-data
    "metaconf.training.cli",  # train, merge
    "metaconf.report.cli",  # report
    "metaconf.serving.cli",  # ask, serve
]


def commands() -> list[Command]:
    """Every subcommand, in `metaconf --help` order."""
    return [command for name in COMMAND_MODULES for command in importlib.import_module(name).COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metaconf",
        description="Teach language models to say how sure they are, and measure whether they can.",
        epilog="Start with `metaconf demo` (runs the whole study on an embedded model, offline, on a CPU).",
    )
    parser.add_argument("--version", action="version", version=f"metaconf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands():
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_command", None):
        parser.print_help()
        return 0
    try:
        return dispatch(args)
    except MetaconfError as exc:
        print(f"metaconf: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "metaconf: interrupted; everything finished so far is stored, rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
