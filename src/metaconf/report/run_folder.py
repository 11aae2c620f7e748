"""Read what the report needs from a run folder (layout: docs/architecture.md), with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metaconf.errors import DataError
from metaconf.evaluation.stage import load_predictions
from metaconf.io import read_json, read_jsonl


@dataclass
class RunData:
    """Everything a report shows: metrics.json, prediction rows, config, templates and training logs."""

    run_dir: Path
    metrics: dict[str, Any]
    predictions: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    templates: Any = None
    training_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def load_run(run_dir: str | Path) -> RunData:
    """Load a run folder; metrics.json is required, everything else is shown when present."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path}: missing (run the evaluation stage first: `metaconf evaluate`)")
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("rows"), list):
        raise DataError(f"{metrics_path}: field 'rows': expected a list of metric rows")
    for i, row in enumerate(metrics["rows"]):
        missing = [k for k in ("condition", "task", "dataset") if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{metrics_path}: rows[{i}]: field '{missing[0]}' missing")
    data = RunData(run_dir=run_dir, metrics=metrics)
    data.predictions = load_predictions(run_dir)
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f": line {mark.line + 1}" if mark else ""
            raise DataError(f"{config_path}{where}: not valid YAML") from None
        data.config = loaded if isinstance(loaded, dict) else {}
    if (run_dir / "templates.json").is_file():
        data.templates = read_json(run_dir / "templates.json")
    for log in sorted((run_dir / "training").glob("*/log.jsonl")):
        data.training_logs[log.parent.name] = read_jsonl(log)
    return data
