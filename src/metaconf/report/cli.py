"""`metaconf report RUN`: regenerate report.md, report.html and plots/ from a run folder."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="regenerate report.md / report.html / plots from a run folder",
        description="Rebuild RUN/report.md, RUN/report.html and RUN/plots/ from RUN/metrics.json, "
                    "RUN/predictions/, RUN/config.yaml, RUN/templates.json and RUN/training/*/log.jsonl.")
    parser.add_argument("run", metavar="RUN", help="the run folder (contains metrics.json)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from metaconf.report import write_report

    md_path, html_path = write_report(args.run)
    print(f"wrote {md_path}")
    print(f"wrote {html_path}")
    return 0
