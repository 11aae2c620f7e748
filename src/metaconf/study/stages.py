"""The study's stages as one list of objects: name, what each reads and writes in the run folder, and how it runs.

`metaconf run` runs them in order; `metaconf evaluate` and `--stages` select from the same list, so the order and
the files each stage owns are written once (docs/architecture.md draws them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metaconf.study.runner import Study


@dataclass(frozen=True)
class Stage:
    """One stage: `run(study)` does its work (skipping what is stored) and returns a one-line summary."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    run: Callable[[Study], str]
    evaluation: bool = False  # part of `metaconf evaluate` (re-scoring a run whose conditions are trained)
    own_process: bool = False  # loads the model: runs in a child process when the study isolates (a local model)


def _method(name: str) -> Callable[[Study], str]:
    return lambda study: getattr(study, f"stage_{name}")()


STAGES: tuple[Stage, ...] = (
    Stage("data", ("the datasets of config.yaml",), ("data/splits.json",), _method("data")),
    Stage(
        "targets",
        ("data/splits.json",),
        ("completions.sqlite", "targets/", "training_sets/<set>/"),
        _method("targets"),
        own_process=True,
    ),
    # train isolates each condition instead (train_conditions), so one child never holds two trainings' leftovers
    Stage("train", ("training_sets/<set>/",), ("training/<condition>/",), _method("train")),
    Stage(
        "consistency",
        ("data/splits.json",),
        ("consistency/eval.jsonl",),
        _method("consistency"),
        True,
        own_process=True,
    ),
    Stage(
        "evaluate",
        ("training/<condition>/", "consistency/eval.jsonl"),
        ("predictions/<condition>__<task>__<dataset>.jsonl",),
        _method("evaluate"),
        True,
        own_process=True,
    ),
    Stage(
        "baselines",
        ("consistency/eval.jsonl", "predictions/base__single__<dataset>.jsonl"),
        ("baselines/<method>__<dataset>.jsonl", "baselines/recalibration.json"),
        _method("baselines"),
        True,
        own_process=True,
    ),
    Stage("metrics", ("predictions/", "baselines/"), ("metrics.json",), _method("metrics"), True),
    Stage(
        "report",
        ("metrics.json", "predictions/", "training/<condition>/log.jsonl"),
        ("report.md", "report.html"),
        _method("report"),
        True,
    ),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
EVALUATION_STAGES = tuple(stage.name for stage in STAGES if stage.evaluation)
BY_NAME = {stage.name: stage for stage in STAGES}


def select(names: Iterable[str]) -> list[Stage]:
    """The named stages in the study's order, with the data stage always (every stage needs the questions)."""
    wanted = set(names) | {"data"}
    unknown = sorted(wanted - set(STAGE_NAMES))
    if unknown:
        from metaconf.errors import ConfigError

        raise ConfigError(f"stages: unknown {', '.join(unknown)}; choose from {', '.join(STAGE_NAMES)}")
    return [stage for stage in STAGES if stage.name in wanted]
