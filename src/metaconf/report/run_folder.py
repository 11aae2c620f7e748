"""Read what the report needs from a run folder (layout: docs/architecture.md), with one-line errors."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metaconf.errors import DataError


@dataclass
class RunData:
    """Everything a report shows: metrics.json, prediction rows, config, templates and training logs."""

    run_dir: Path
    metrics: dict[str, Any]
    predictions: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    templates: Any = None
    training_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {number}: expected a JSON object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None


def load_run(run_dir: str | Path) -> RunData:
    """Load a run folder; metrics.json is required, everything else is shown when present."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path}: missing (run the evaluation stage first: `metaconf evaluate`)")
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("rows"), list):
        raise DataError(f"{metrics_path}: field 'rows': expected a list of metric rows")
    for i, row in enumerate(metrics["rows"]):
        missing = [k for k in ("condition", "task", "dataset") if not isinstance(row, dict) or k not in row]
        if missing:
            raise DataError(f"{metrics_path}: rows[{i}]: field '{missing[0]}' missing")
    data = RunData(run_dir=run_dir, metrics=metrics)
    for path in sorted((run_dir / "predictions").glob("*.jsonl")):
        parts = path.stem.split("__")
        if len(parts) != 3:
            raise DataError(f"{path}: expected a name <condition>__<task>__<dataset>.jsonl")
        data.predictions[(parts[0], parts[1], parts[2])] = read_jsonl(path)
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
        data.templates = _read_json(run_dir / "templates.json")
    for log in sorted((run_dir / "training").glob("*/log.jsonl")):
        data.training_logs[log.parent.name] = read_jsonl(log)
    return data


def atomic_write(path: Path, content: str | bytes) -> Path:
    """Write to a temporary file in the same folder, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
