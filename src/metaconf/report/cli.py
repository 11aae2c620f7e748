"""`metaconf report RUN`: regenerate report.md, report.html and plots/ from a run folder."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from metaconf.flags import Command


class ReportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="The run folder (contains metrics.json).")


def _report(options: ReportOptions) -> int:
    from metaconf.report import write_report
    from metaconf.study.config import read_run_config

    if (options.run / "config.yaml").is_file():  # a hand-edited config is named with its field, before any work
        read_run_config(options.run / "config.yaml")
    md_path, html_path = write_report(options.run)
    print(f"wrote {md_path}")
    print(f"wrote {html_path}")
    return 0


COMMANDS = [
    Command(
        "report",
        help="regenerate report.md / report.html / plots from a run folder",
        description="Rebuild RUN/report.md, RUN/report.html and RUN/plots/ from RUN/metrics.json, RUN/predictions/, "
        "RUN/config.yaml, RUN/templates.json and RUN/training/*/log.jsonl.",
        options=ReportOptions,
        positional=("run",),
        run=_report,
        run_folder="run",
    ),
]
