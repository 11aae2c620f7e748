"""The study's conditions as data: what each compared model is (the base model, or the base model fine-tuned on one
training set with one objective and its own training options) and how plots draw it.

The paper's four conditions are records like any other, named here once; a study config lists them by name
(`conditions: [base, single, pairwise, multitask]`, the default) or as full records (a fifth condition such as
`{name: single_fast, training_set: single, training: {learning_rate: 0.003}}` needs no code). Every stage, table
and figure iterates over the configured records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaconf.names import Name

BASE = "base"
TRAINED_CONDITIONS = ("single", "pairwise", "multitask")  # the paper's: each trained on the training set of its name
CONDITIONS = (BASE, *TRAINED_CONDITIONS)
NAME_PATTERN = r"^[A-Za-z0-9_.+-]+$"
OBJECTIVES = ("sft", "brier", "grpo")  # docs/training.md, "Objectives"
Objective = Literal["sft", "brier", "grpo"]
LOCAL_ONLY_OBJECTIVES = ("brier", "grpo")  # need the model's probabilities or its samples: LoRA, not a hosted job

# one colour per condition in every plot (Okabe-Ito): base is grey, the reference; a condition without a colour of
# its own takes the first unused one of EXTRA_COLORS, in the study's order
PAPER_COLORS = {BASE: "#8C8C8C", "single": "#0072B2", "pairwise": "#E69F00", "multitask": "#009E73"}
EXTRA_COLORS = ("#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")


class Condition(BaseModel):
    """One compared condition: the base model, or the base model fine-tuned on one training set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(
        description="The condition's name in tables, plots and file names (RUN/training/NAME/, predictions).",
        pattern=NAME_PATTERN,
    )
    training_set: Name | None = Field(
        None,
        description="The training set (a targets.sets name) it is fine-tuned on; null: not fine-tuned (the base "
        "model).",
    )
    objective: Objective = Field(
        "sft",
        description="The training objective (docs/training.md, 'Objectives'): sft: supervised fine-tuning on the "
        "training set's replies (the paper's recipe); brier: the answer by cross-entropy, the stated confidence by "
        "the expected Brier score of the model's distribution over the confidence values against whether the "
        "answer is correct, the pairwise choice by log loss on the question answered correctly more often; grpo: "
        "reinforcement learning (TRL's GRPOTrainer) with the reward correct - (confidence - correct)^2 (single) "
        "or choosing the better question (pairwise). brier and grpo train LoRA only (not training.backend hosted).",
    )
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Its own training options: changes to training.lora for this condition only, e.g. {epochs: 2}.",
    )
    color: str | None = Field(
        None,
        description="Its colour in every plot (#RRGGBB); default: the paper's colour for its name, else the next "
        "unused one.",
        pattern=r"^#[0-9A-Fa-f]{6}$",
    )

    @property
    def trained(self) -> bool:
        return self.training_set is not None


def paper_condition(name: str) -> Condition:
    """A condition named by its name only: the base model, or fine-tuned on the training set of that name."""
    return as_condition(name)


def with_default_set(entry: Any) -> Any:
    """A config's condition entry before validation: a name becomes the paper condition's fields, a mapping
    without `training_set` trains on the set of its name (unless it is `base`); anything else is left to fail."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if isinstance(entry, Mapping) and "training_set" not in entry and isinstance(entry.get("name"), str):
        return {**entry, "training_set": None if entry["name"] == BASE else entry["name"]}
    return entry


def as_condition(entry: str | Mapping[str, Any] | Condition) -> Condition:
    """A config's condition entry (a name, a mapping or a record) as a record."""
    if isinstance(entry, Condition):
        return entry
    if not isinstance(entry, (str, Mapping)):
        raise ValueError(f"a condition is a name or a mapping, got {type(entry).__name__}")
    return Condition.model_validate(with_default_set(entry))


def compact(condition: Condition) -> str | dict[str, Any]:
    """How a record is written back (config.yaml, metrics.json): its name when it is the paper condition of that
    name, else the fields that differ from the defaults."""
    if condition == paper_condition(condition.name):
        return condition.name
    return condition.model_dump(mode="json", exclude_defaults=True) | {"training_set": condition.training_set}


def conditions_of(config: Mapping[str, Any] | None) -> list[Condition]:
    """The condition records of a stored study config (RUN/config.yaml, metrics.json's `config`); entries that do
    not read as records (an older or hand-edited file) are left out."""
    found = []
    for entry in (config or {}).get("conditions") or []:
        try:
            found.append(as_condition(entry))
        except (ValueError, ValidationError):
            continue
    return found


def shuffled_controls(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(condition, control) pairs of a study config (a mapping): the control is trained on a set with
    `shuffle_targets` whose twin (the same task, size, mix and domains, targets in place) the condition is trained
    on. Found from the config, not from names."""
    sets = [s for s in (config.get("targets") or {}).get("sets") or [] if isinstance(s, dict)]
    same = ("task", "size", "single_share", "domains")
    twins = {
        s["name"]: [t["name"] for t in sets if not t.get("shuffle_targets") and all(t.get(k) == s.get(k) for k in same)]
        for s in sets
        if s.get("shuffle_targets")
    }
    records = [c for c in conditions_of(config) if c.training_set]
    return [
        (c.name, control.name)
        for control in records
        if control.training_set in twins
        for c in records
        if c.training_set in twins[control.training_set]
    ]


def objective_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(condition, its sft twin) pairs of a study config (a mapping): each condition trained with another objective
    than sft, against each sft condition trained on the same training set (the "which objective" claim)."""
    records = [c for c in conditions_of(config) if c.trained]
    return [
        (c.name, twin.name)
        for c in records
        if c.objective != "sft"
        for twin in records
        if twin.objective == "sft" and twin.training_set == c.training_set
    ]


def condition_colors(names: Iterable[str], records: Iterable[Condition] = ()) -> dict[str, str]:
    """name -> colour: a record's own colour, else the paper's colour for its name, else the next unused extra."""
    own = {c.name: c.color for c in records if c.color}
    names = list(dict.fromkeys(names))
    taken = {own.get(n) or PAPER_COLORS.get(n) for n in names}
    extra = iter([c for c in EXTRA_COLORS if c not in taken] * (1 + len(names) // len(EXTRA_COLORS)))
    return {n: own.get(n) or PAPER_COLORS.get(n) or next(extra) for n in names}
