"""`metaconf run STUDY.yaml` and `metaconf demo`: the whole study from a config (every field also a flag)."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from metaconf.configfile import read_config_text
from metaconf.flags import Command, read_file
from metaconf.study.config import StudyConfig, check_config
from metaconf.study.stages import EVALUATION_STAGES, STAGE_NAMES

DEMO_CONFIG = "demo.yaml"
Stage = Literal[STAGE_NAMES]  # type: ignore[valid-type]


IN_PROCESS = (
    "Run every stage in this process. By default each stage that loads a local model runs in a child process of its "
    "own, which hands all the memory it held back to the system when it ends."
)


class RunOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path | None = Field(None, description="The run folder (default: runs/<study name>); rerunning resumes it.")
    stages: list[Stage] | None = Field(None, description="Run only these stages (the data stage always runs).")
    quiet: bool = Field(False, description="No progress bars or stage lines.")
    in_process: bool = Field(False, description=IN_PROCESS)


class DemoOptions(RunOptions):
    show_config: bool = Field(False, description="Print the demo's config (with any flags applied) and exit.")


class EvaluateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="A run folder made by `metaconf run` or `metaconf demo`.")
    no_report: bool = Field(False, description="Stop after metrics.json.")
    quiet: bool = Field(False, description="No progress bars or stage lines.")
    in_process: bool = Field(False, description=IN_PROCESS)


def demo_config_text() -> str:
    return resources.files("metaconf.study").joinpath(DEMO_CONFIG).read_text(encoding="utf-8")


def _demo_preset(options: DemoOptions) -> tuple[dict[str, Any], str]:
    return read_config_text(demo_config_text(), "demo config"), "demo config"


def run_study(options: RunOptions, config: StudyConfig, source: str) -> int:
    """Run (or resume) `config`'s study in `options.out`; `source` names the config in errors."""
    from metaconf.errors import ConfigError
    from metaconf.names import check_folder, name_problem
    from metaconf.study.runner import Study

    if options.out is None and name_problem(config.name):
        raise ConfigError(
            f"{source}: field 'name': {config.name[:80]!r} is not a folder name ({name_problem(config.name)}), so "
            f"the default run folder runs/<name> cannot be used; pass --out"
        )
    run_dir = check_folder(options.out, "--out") if options.out else Path("runs") / config.name
    study = Study(config, run_dir, quiet=options.quiet, source=source, isolate=not options.in_process)
    study.run(tuple(options.stages or STAGE_NAMES))
    print(f"report: {run_dir / 'report.html'} (also {run_dir / 'report.md'}, {run_dir / 'metrics.json'})")
    return 0


def _demo(options: DemoOptions, config: StudyConfig, source: str) -> int:
    if options.show_config:
        sys.stdout.write(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return 0
    return run_study(options, config, source)


def _run_config(options: EvaluateOptions) -> tuple[dict[str, Any], str]:
    return read_file(options.run / "config.yaml"), str(options.run / "config.yaml")


def _evaluate(options: EvaluateOptions, config: StudyConfig, source: str) -> int:
    """The evaluation stages of the study's list (all but `report` with --no-report) on an existing run folder."""
    from metaconf.study.runner import Study

    stages = tuple(s for s in EVALUATION_STAGES if not (options.no_report and s == "report"))
    Study(config, options.run, quiet=options.quiet, source=source, isolate=not options.in_process).run(stages)
    return 0


COMMANDS = [
    Command(
        "run",
        help="run a whole study from a YAML config",
        description="Run a study: sample answers, build calibrated targets, fine-tune each condition, evaluate every "
        "condition x task x dataset, write metrics.json, report.md and report.html. Rerunning the same command "
        "resumes: nothing stored is recomputed. Every config field is also a flag (--training.lora.rank 8); "
        "fields are described in docs/study.md.",
        options=RunOptions,
        config=StudyConfig,
        config_argument="STUDY.yaml",
        check=check_config,
        run=run_study,
    ),
    Command(
        "demo",
        help="the whole study on the embedded model and bundled data (CPU, offline)",
        description="Run the paper's design on SmolLM2-135M-Instruct (shipped with metaconf) with the bundled "
        "benchmark samples: offline, on a laptop CPU. Same as `metaconf run` with the demo config (print it with "
        "--show-config); --config FILE and flags change it field by field.",
        options=DemoOptions,
        config=StudyConfig,
        preset=_demo_preset,
        check=check_config,
        run=_demo,
        config_help="its values replace the demo config's",
    ),
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
