"""The reference pages generated from the code: docs/study.md (every study config field) and docs/cli.md (every
command and flag). Both come from the pydantic models' own types, defaults and descriptions:
`python -m metaconf.reference study > docs/study.md`, `python -m metaconf.reference cli > docs/cli.md`."""

from __future__ import annotations

import sys
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from metaconf.flags import (
    Command,
    Flag,
    bounds_text,
    default_text,
    merged_fields,
    model_flags,
    submodel,
    type_name,
    union_models,
)
from metaconf.study.config import StudyConfig


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a list-of-models field (data.train: list[TrainDataset]), documented as `data.train[].name`."""
    if get_origin(annotation) is list:
        item = (get_args(annotation) or (None,))[0]
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def config_reference(model: type[BaseModel] = StudyConfig, prefix: str = "") -> str:
    """A markdown table per section of a config, depth first."""
    return _reference(model.model_fields, prefix)


def _reference(fields: dict[str, Any], prefix: str) -> str:
    """The table of one section's fields, then the sections of its nested models (for a field holding one of
    several models, one section with the fields of all of them)."""
    rows, sections = [], []
    for name, field in fields.items():
        key = f"{prefix}{name}"
        nested = submodel(field.annotation)
        members = union_models(field.annotation)
        item = _list_item_model(field.annotation)
        shown = nested.__name__ if nested else typed(field.annotation, field)
        if members:
            shown = "one of: " + ", ".join(m.__name__ for m in members) + (" or null" if field.default is None else "")
        default = default_text(field)
        default = default if default in ("required", "(see its fields)") or " entries" in default else f"`{default}`"
        rows.append(f"| `{key}` | {_cell(shown)} | {_cell(default)} | {_cell(field.description or '')} |")
        if members:
            sections.append(_reference(merged_fields(members), f"{key}."))
        elif nested:
            sections.append(config_reference(nested, f"{key}."))
        elif item:
            sections.append(config_reference(item, f"{key}[]."))
    title = prefix.rstrip(".") or "top level"
    table = "\n".join([f"### `{title}`", "", "| field | type | default | meaning |", "|---|---|---|---|", *rows])
    return "\n\n".join([table, *sections])


STUDY_HEADER = """# The study config

`metaconf run STUDY.yaml` reads one YAML file; `metaconf demo --show-config` prints the demo's, and
`examples/paper.yaml` is the paper's design for a large model. Unknown fields are errors, and every error names
the file and the field (e.g. `study.yaml: field 'data.train.0.train': Input should be greater than or equal to 1`).
Every field is also a flag of `metaconf run`, `demo` and `evaluate`: `--training.lora.rank 8` (see
[cli.md](cli.md)). This page is generated from the config's own field descriptions
(`python -m metaconf.reference study > docs/study.md`).
A key given twice is an error (plain YAML keeps the last one silently), and so are binary files, nesting deeper
than 32 levels and YAML alias bombs. Before any work the run also checks that every trained condition has its
training set in `targets.sets`, that `model.options` are options of the chosen engine (each engine's are listed
under `model.options`), and that dataset names are
unique: a dataset is named by its `label` (default: the registered name or the file's name), so two files named
`validation.jsonl` in different folders need a `label` each. `label` and `domain` name the dataset in every table
and plot. Errors found while loading the data (a missing file, too few questions) name the config file and field
and leave no run folder behind. See [robustness.md](robustness.md).

"""


CLI_HEADER = """# The command line

`metaconf --help` lists the commands and `metaconf COMMAND --help` their flags. Every command is built from typed
settings (pydantic models) by one parser (`metaconf/flags.py`), so each of their fields is a flag named by its dotted
path, and the same names work everywhere:

- `--config FILE` reads a YAML file of the command's config (the study config for `run`, `demo` and `evaluate`;
  the training or data-building settings for `train` and `build-data`; the command's options otherwise);
- flags given on the command line override the file (and the preset: the demo's config, a run's config.yaml) field
  by field: `metaconf run study.yaml --training.lora.rank 8 --evaluation.n_boot 2000`;
- `--per-dataset` is accepted for `--per_dataset`; a switch is `--quiet` or `--no-quiet` (`--lora.fast_loss`,
  `--no-lora.fast_loss`); a list takes several words (`--conditions single pairwise`); mappings and lists of
  mappings take YAML (`--model.served_adapters '{single: ft-single}'`); a field holding one of several models
  has the fields of all of them (`--model.engine vllm --model.options.tensor_parallel_size 2`); `null` clears an
  optional field;
- a bad value is one line naming the flag (`--lora.learning_rate: Input should be greater than 0`) or the file's
  field, and exits with status 2.

Flags of metaconf 0.1 that changed are accepted for one more release with a deprecation line (CHANGELOG.md).
This page is generated (`python -m metaconf.reference cli > docs/cli.md`).
"""


def typed(annotation: Any, info: Any) -> str:
    """A field's type as the docs show it, with its bounds: 'int (>= 1, <= 1024)'."""
    bounds = bounds_text(info)
    return type_name(annotation) + (f" ({bounds})" if bounds else "")


def _flag_rows(flags: list[Flag]) -> list[str]:
    return [
        f"| `{f.option}` | {_cell(typed(f.annotation, f.info))} | {_cell(default_text(f.info))} | "
        f"{_cell(f.info.description or '')} |"
        for f in flags
    ]


def cli_reference(commands: list[Command] | None = None) -> str:
    """One section per command: what it does, its arguments, and a row per flag (study config flags link to
    docs/study.md instead of repeating ~80 rows three times)."""
    from metaconf.cli import commands as all_commands

    out = [CLI_HEADER]
    for command in commands or all_commands():
        words = [f"[{command.config_argument}]"] if command.config_argument else []
        words += [f"[{name.upper()}]" for name in command.positional]
        out += [
            f"## `metaconf {command.name}`",
            "",
            f"`metaconf {command.name} {' '.join(words)} [--config FILE] [--FIELD VALUE ...]`".replace("  ", " "),
            "",
            command.description,
            "",
        ]
        out += ["| flag | type | default | meaning |", "|---|---|---|---|", *_flag_rows(model_flags(command.options))]
        if command.config is StudyConfig:
            out += ["", "Every study config field, as `--<field>` (e.g. `--training.lora.rank`): [study.md](study.md)."]
        elif command.config is not None:
            out += [
                f"| `--config` | path | null | A YAML file of {command.config.__name__}. |",
                *_flag_rows(model_flags(command.config)),
            ]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    page = sys.argv[1] if len(sys.argv) > 1 else "study"
    print(STUDY_HEADER + config_reference() if page == "study" else cli_reference())
