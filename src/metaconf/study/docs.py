"""Render the study config's fields (their types, defaults and descriptions) as the markdown of docs/study.md."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from metaconf.study.config import StudyConfig


def _default(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(see below)"
        return f"`{json.dumps(value, default=str)}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{json.dumps(field.default, default=str)}`"


def _nested(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("metaconf.", "")


def config_reference(model: type[BaseModel] = StudyConfig, prefix: str = "") -> str:
    """A markdown table per section of the config, depth first."""
    rows, sections = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _nested(field.annotation)
        type_name = _type_name(nested or field.annotation)
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {type_name.replace('|', 'or')} | {_default(field)} | {description} |")
        if nested:
            sections.append(config_reference(nested, f"{key}[]." if "list" in str(field.annotation) else f"{key}."))
    title = prefix.rstrip(".") or "top level"
    table = "\n".join([f"### `{title}`", "", "| field | type | default | meaning |", "|---|---|---|---|", *rows])
    return "\n\n".join([table, *sections])


HEADER = """# The study config

`metaconf run STUDY.yaml` reads one YAML file; `metaconf demo --show-config` prints the demo's, and
`examples/paper.yaml` is the paper's design for a large model. Unknown fields are errors, and every error names
the file and the field (e.g. `study.yaml: field 'data.train.0.train': Input should be greater than or equal to 1`).
This page is generated from the config's own field descriptions (`python -m metaconf.study.docs > docs/study.md`).
A key given twice is an error (plain YAML keeps the last one silently), and so are binary files, nesting deeper
than 32 levels and YAML alias bombs. Before any work the run also checks that every trained condition has its
training set in `targets.sets`, that `model.options` are options of the chosen engine, and that dataset names are
unique: a dataset is named by its `label` (default: the registered name or the file's name), so two files named
`validation.jsonl` in different folders need a `label` each. `label` and `domain` name the dataset in every table
and plot. Errors found while loading the data (a missing file, too few questions) name the config file and field
and leave no run folder behind. See [robustness.md](robustness.md).

"""

if __name__ == "__main__":
    print(HEADER + config_reference())
