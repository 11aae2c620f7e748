"""Read what the report needs from a run folder (layout: docs/architecture.md), with one-line errors; the run's
records are validated through their models (metaconf.records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaconf.configfile import read_mapping
from metaconf.errors import DataError
from metaconf.io import read_json, read_jsonl
from metaconf.records import Prediction, read_metrics, read_run_predictions


@dataclass
class RunData:
    """Everything a report shows: metrics.json (validated, as a dict), the typed prediction rows, config, templates
    and training logs."""

    run_dir: Path
    metrics: dict[str, Any]
    predictions: dict[tuple[str, str, str], list[Prediction]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    templates: Any = None
    training_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def load_run(run_dir: str | Path) -> RunData:
    """Load a run folder; metrics.json is required, everything else is shown when present."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    data = RunData(run_dir=run_dir, metrics=read_metrics(run_dir / "metrics.json").to_row())
    data.predictions = read_run_predictions(run_dir)
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        data.config = read_mapping(config_path)  # validated as a study config by `metaconf report`
    if (run_dir / "templates.json").is_file():
        data.templates = read_json(run_dir / "templates.json")
    for log in sorted((run_dir / "training").glob("*/log.jsonl")):
        data.training_logs[log.parent.name] = read_jsonl(log)
    return data
