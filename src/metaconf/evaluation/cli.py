"""`metaconf evaluate RUN`: (re)run the evaluation stages of a run folder from its config.yaml (flags change it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from metaconf.flags import Command, read_file
from metaconf.study.config import StudyConfig, check_config


class EvaluateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="A run folder made by `metaconf run` or `metaconf demo`.")
    no_report: bool = Field(False, description="Stop after metrics.json.")
    quiet: bool = Field(False, description="No progress bars or stage lines.")


def _run_config(options: EvaluateOptions) -> tuple[dict[str, Any], str]:
    return read_file(options.run / "config.yaml"), str(options.run / "config.yaml")


def _evaluate(options: EvaluateOptions, config: StudyConfig, source: str) -> int:
    from metaconf.study.runner import Study

    stages = ("consistency", "evaluate", "baselines", "metrics") + (() if options.no_report else ("report",))
    Study(config, options.run, quiet=options.quiet, source=source).run(stages)
    return 0


COMMANDS = [
    Command(
        "evaluate",
        help="evaluate every condition of a run folder (consistency, evaluate, baselines, metrics, report)",
        description="Evaluate base and trained conditions on the run's held-out and new-domain questions, then "
        "write metrics.json and the report. Starts from RUN/config.yaml; --config FILE and flags (e.g. "
        "--evaluation.n_boot 2000) change it; completions already stored are reused.",
        options=EvaluateOptions,
        positional=("run",),
        config=StudyConfig,
        preset=_run_config,
        check=check_config,
        run=_evaluate,
        config_help="its values replace RUN/config.yaml's",
    ),
]
