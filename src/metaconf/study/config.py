"""The study config: one typed, validated YAML file describes a whole study.

Every field carries its help text (`Field(description=...)`), so docs and errors come from one place. An invalid
config is rejected before any work, with an error that names the file and the field.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from metaconf.bounds import SEED_MAX
from metaconf.conditions import (
    CONDITIONS,
    LOCAL_ONLY_OBJECTIVES,
    Condition,
    as_condition,
    compact,
    objective_pairs,
    shuffled_controls,
    with_default_set,
)
from metaconf.configfile import read_config_file, read_mapping
from metaconf.engines.kinds import EmbeddedModel, ModelConfig
from metaconf.errors import ConfigError, field_location, validation_error
from metaconf.names import Name, name_problem
from metaconf.targets import TargetsConfig
from metaconf.training.config import LoraTrainConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _DatasetSource(_Strict):
    """Where a dataset entry's questions come from and how it is named; shared by training and evaluation entries."""

    name: str = Field(description="A registered dataset name (`metaconf datasets`) or a data file.")
    path: str | None = Field(None, description="A full copy of the dataset (folder or file); default: bundled sample.")
    split: str | None = Field(None, description="Which split to draw from; default: the dataset's default split.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Field mapping for user files (question=, answers=, choices=, ...)."
    )
    label: Name | None = Field(
        None,
        description="The dataset's name in tables, plots and prediction files (default: the registered name, "
        "or the file's name without its extension); unique within the study.",
        pattern=r"^[A-Za-z0-9_.+-]+$",
    )
    domain: str | None = Field(
        None,
        description="The dataset's domain in tables and plots (default: the registered dataset's domain, or "
        "'general' for a user file).",
    )


class TrainDataset(_DatasetSource):
    """A training-domain dataset: some questions train, others are held out for in-domain evaluation."""

    train: int = Field(50, le=1_000_000, ge=1, description="Training questions drawn from it.")
    held_out: int = Field(
        24, le=1_000_000, ge=2, description="Held-out questions for in-domain evaluation (never trained on)."
    )


class EvalDataset(_DatasetSource):
    """A new-domain dataset, evaluated only."""

    n: int = Field(24, le=1_000_000, ge=2, description="Questions evaluated.")


class DataConfig(_Strict):
    train: list[TrainDataset] = Field(description="Training domains (their held-out questions are in-domain tests).")
    eval: list[EvalDataset] = Field(default_factory=list, description="New-domain test datasets.")
    seed: int = Field(0, le=SEED_MAX, ge=0, description="Seed of the question draws and the train / held-out split.")

    @field_validator("train")
    @classmethod
    def _non_empty(cls, v: list[TrainDataset]) -> list[TrainDataset]:
        if not v:
            raise ValueError("at least one training dataset is needed")
        return v


class TrainingConfig(_Strict):
    """How each condition is fine-tuned."""

    backend: Literal["lora", "hosted"] = Field(
        "lora", description="lora: TRL + PEFT on local hardware; hosted: the provider's fine-tuning API."
    )
    lora: LoraTrainConfig = Field(default_factory=LoraTrainConfig, description="LoRA settings.")
    lora_by_condition: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Deprecated: a condition's own training options are its record's `training` "
        "(conditions: [{name: multitask, training: {epochs: 2}}]); read into those records.",
    )
    hosted_base_model: str | None = Field(
        None, description="hosted: the provider's fine-tunable model name (default: model.name)."
    )

    @model_validator(mode="after")
    def _valid_changes(self) -> TrainingConfig:
        for condition, changes in self.lora_by_condition.items():
            try:
                LoraTrainConfig.model_validate({**self.lora.model_dump(), **changes})
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"lora_by_condition.{condition}.{field_location(first)}: {first['msg']}") from None
        return self


class EvaluationConfig(_Strict):
    pairs_per_question: int = Field(
        4,
        le=1000,
        ge=1,
        description="Pairs each evaluation question is put in, pairwise task (n x k / 2 pairs per dataset, a "
        "connected design: the first 2 form a cycle through every question); the Bradley-Terry strengths are "
        "fitted to the choices in these pairs.",
    )
    pairs_per_dataset: int | None = Field(
        None,
        le=100_000,
        ge=1,
        description="Pairs of evaluation questions per dataset, pairwise task; null: from pairs_per_question. Set, "
        "it wins (a config written before pairs_per_question keeps its pairs).",
    )
    consistency_samples: int = Field(
        10,
        le=1000,
        ge=2,
        description="Base-model samples per evaluation question, for the consistency ranking (AUC_c).",
    )
    consistency_temperature: float = Field(
        1.0,
        le=10,
        ge=0,
        description="Sampling temperature of those samples (the evaluation's own setting; the training "
        "targets' samples use targets.temperature). Seeded by evaluation.seed.",
    )
    temperature: float = Field(0.0, le=10, ge=0, description="Sampling temperature of evaluation answers (0 = greedy).")
    logprobs: int = Field(
        5,
        ge=0,
        le=20,
        description=(
            "Top log-probabilities requested per token (pairwise P(choice); under guided format also the "
            "probability-weighted confidence, which asks for at least 11); 0: off."
        ),
    )
    format: Literal["guided", "free"] = Field(
        "guided",
        description=(
            "guided: replies are constrained to the template's format (the model still chooses every answer, "
            "confidence and choice); free: unconstrained text, parsed afterwards (the paper's setting). guided falls "
            "back to free, with a warning, on an engine that cannot guide."
        ),
    )
    consistency_format: Literal["guided", "free"] = Field(
        "guided",
        description=(
            "The same choice for the consistency stage (base-model answer samples of the evaluation questions)."
        ),
    )
    n_boot: int = Field(1000, le=100_000, ge=50, description="Bootstrap resamples for confidence intervals.")
    seed: int = Field(0, le=SEED_MAX, ge=0, description="Seed of pair draws and bootstrap.")

    def n_pairs(self, n_questions: int) -> int:
        """Pairs per dataset of `n_questions`: pairs_per_dataset when set, else ceil(n x pairs_per_question / 2)."""
        if self.pairs_per_dataset is not None:
            return self.pairs_per_dataset
        return -(-n_questions * self.pairs_per_question // 2)


class GradingConfig(_Strict):
    """How the evaluated answers are graded (docs/grading.md)."""

    method: Literal["rule", "judge"] = Field(
        "rule",
        description="rule: the offline rules per answer type; judge: an LLM judge decides open-ended "
        "answers that do not match a gold answer exactly (multiple choice, numeric and yes/no stay with the rules).",
    )
    judge_model: ModelConfig | None = Field(
        None,
        description="judge: the model that judges (same settings as `model`); default: the base model under "
        "study, without any adapter.",
    )
    template: str | None = Field(
        None,
        description="judge: the prompt, a template with {question}, {gold} and {answer}; default: "
        "metaconf.grading.DEFAULT_JUDGE_TEMPLATE.",
    )
    max_new_tokens: int = Field(8, ge=1, le=64, description="judge: tokens of its (yes / no) reply.")

    @model_validator(mode="after")
    def _judge_settings(self) -> GradingConfig:
        if self.method == "rule" and (self.judge_model is not None or self.template is not None):
            raise ValueError("judge_model and template apply to method 'judge' only")
        if self.template is not None:
            from metaconf.grading.judge import template_problem

            problem = template_problem(self.template)
            if problem:
                raise ValueError(f"template: {problem}")
        return self


class StudyConfig(_Strict):
    """A whole study: data, model, targets, conditions, training and evaluation."""

    name: str = Field("study", description="A name for the run, shown in the report.")
    model: ModelConfig = Field(default_factory=EmbeddedModel, description="The model under study.")
    data: DataConfig = Field(description="Training and evaluation datasets.")
    targets: TargetsConfig = Field(default_factory=TargetsConfig, description="Sampling and calibrated targets.")
    conditions: list[Condition] = Field(
        default_factory=lambda: [as_condition(c) for c in CONDITIONS],
        description="Conditions to compare, by name (base, single, pairwise, multitask: the paper's, each trained "
        "on the training set of its name) or as records {name, training_set, objective, training, color} "
        "(docs/training.md, 'Conditions').",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Fine-tuning settings.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="Evaluation settings.")
    grading: GradingConfig = Field(
        default_factory=GradingConfig,
        description="How answers are graded: rules (default) or an LLM judge for open-ended answers.",
    )
    baselines: list[Literal["consistency", "token_probability", "p_true", "recalibration", "constant"]] = Field(
        default_factory=lambda: ["consistency", "token_probability", "p_true", "recalibration", "constant"],
        description="Confidence methods without fine-tuning, scored on the evaluation questions next to the "
        "conditions (docs/baselines.md): consistency (the teacher), token_probability, p_true, recalibration "
        "(isotonic and Platt on the base model's stated confidence; needs the base condition), constant (the training "
        "set's accuracy of the modal answers on every question). [] turns them off.",
    )

    @field_validator("baselines")
    @classmethod
    def _distinct_baselines(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("baselines repeat")
        return v

    @field_validator("conditions", mode="before")
    @classmethod
    def _records(cls, v: Any) -> Any:
        return [with_default_set(c) for c in v] if isinstance(v, list) else v

    @field_validator("conditions")
    @classmethod
    def _distinct_conditions(cls, v: list[Condition]) -> list[Condition]:
        names = [c.name for c in v]
        if len(set(names)) != len(names):
            raise ValueError("conditions repeat")
        return v

    @field_serializer("conditions")
    def _compact_conditions(self, v: list[Condition]) -> list[Any]:
        return [compact(c) for c in v]

    @model_validator(mode="after")
    def _condition_training(self) -> StudyConfig:
        """Fold the deprecated training.lora_by_condition into the records, then check every record's options."""
        changes = self.training.lora_by_condition
        extra = sorted(set(changes) - set(self.trained_conditions))
        if extra:
            raise ValueError(f"training.lora_by_condition names {extra}, not trained conditions of this study")
        if changes:
            print(
                "metaconf: training.lora_by_condition is deprecated and will be removed in metaconf 0.3; give the "
                "condition its own options instead (conditions: [{name: NAME, training: {...}}])",
                file=sys.stderr,
            )
            self.conditions = [
                c.model_copy(update={"training": {**changes[c.name], **c.training}}) if c.name in changes else c
                for c in self.conditions
            ]
            self.training.lora_by_condition = {}
        for i, condition in enumerate(self.conditions):
            try:
                self.lora_for(condition.name)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"conditions.{i}.training.{field_location(first)}: {first['msg']}") from None
            if condition.training and not condition.trained:
                raise ValueError(f"conditions.{i}.training: '{condition.name}' is not fine-tuned (no training_set)")
        return self

    @property
    def trained_conditions(self) -> list[str]:
        """Names of the conditions that are fine-tuned, in the study's order."""
        return [c.name for c in self.conditions if c.trained]

    @property
    def condition_names(self) -> list[str]:
        return [c.name for c in self.conditions]

    def condition(self, name: str) -> Condition:
        """The record of a condition of this study (ConfigError naming the field when there is none)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise ConfigError(f"conditions: no condition {name!r} in this study ({', '.join(self.condition_names)})")

    def contrasts(self) -> list[tuple[str, str]]:
        """(multitask-trained, single-task-trained) condition pairs of the same objective: does training on both
        tasks beat one? In the study's order, single before pairwise: the paper's (multitask, single), (multitask,
        pairwise). Then (condition, its shuffled-target control) pairs (metaconf.conditions.shuffled_controls),
        then (condition, its sft twin on the same set) for the other objectives (conditions.objective_pairs)."""
        task = {s.name: s.task for s in self.targets.sets if not s.shuffle_targets}  # controls: below
        trained_on = {c.name: task.get(c.training_set or "") for c in self.conditions}
        objective = {c.name: c.objective for c in self.conditions}
        mixed = [c for c, t in trained_on.items() if t == "multitask"]
        pairs = [
            (m, c)
            for m in mixed
            for one in ("single", "pairwise")
            for c, t in trained_on.items()
            if t == one and objective[c] == objective[m]
        ]
        stored = self.model_dump(mode="json")
        return pairs + shuffled_controls(stored) + objective_pairs(stored)

    def lora_for(self, condition: str) -> LoraTrainConfig:
        """The LoRA settings of one condition: training.lora with the condition's own training options."""
        changes = next((c.training for c in self.conditions if c.name == condition), None)
        return (
            LoraTrainConfig.model_validate({**self.training.lora.model_dump(), **changes})
            if changes
            else self.training.lora
        )


def parse_config(raw: dict[str, Any], source: str = "config") -> StudyConfig:
    """Validate a config mapping; raise ConfigError naming the source and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(source, exc) from None
    check_config(config, source)
    return config


def check_config(config: StudyConfig, source: str) -> None:
    """What a valid config must also satisfy on this machine: datasets exist and are named uniquely, every trained
    condition has its training set, engine options are the engine's."""
    _check_datasets(config, source)
    _check_conditions(config, source)
    _check_engine_options(config, source)


def dataset_entries(config: StudyConfig) -> list[tuple[str, TrainDataset | EvalDataset]]:
    """(config field, entry) of every dataset entry: 'data.train.0', ..., 'data.eval.0', ..."""
    return [(f"data.train.{i}", d) for i, d in enumerate(config.data.train)] + [
        (f"data.eval.{i}", d) for i, d in enumerate(config.data.eval)
    ]


def dataset_label(entry: TrainDataset | EvalDataset, registered: bool) -> str:
    """The name a dataset entry goes by in the study: its label, else the name its questions are loaded under."""
    if entry.label:
        return entry.label
    if entry.fields.get("dataset"):
        return entry.fields["dataset"]
    if registered or (entry.path and not Path(entry.path).is_file()):
        return entry.name
    return Path(entry.path or entry.name).stem


def _check_datasets(config: StudyConfig, source: str) -> None:
    from metaconf.data import list_datasets

    known = {info.name for info in list_datasets()}
    seen: dict[str, str] = {}
    for where, entry in dataset_entries(config):
        if entry.path and not Path(entry.path).exists():
            raise ConfigError(f"{source}: field '{where}.path': {entry.path} not found")
        if entry.name not in known and not Path(entry.path or entry.name).exists():
            raise ConfigError(
                f"{source}: field '{where}.name': unknown dataset {entry.name!r} "
                f"(not registered, not a file); see `metaconf datasets`"
            )
        label = dataset_label(entry, entry.name in known)
        problem = name_problem(label)
        if problem:  # it names prediction files: RUN/predictions/<condition>__<task>__<label>.jsonl
            field = "label" if entry.label else "fields.dataset" if entry.fields.get("dataset") else "name"
            raise ConfigError(f"{source}: field '{where}.{field}': dataset name {label[:80]!r}: {problem}")
        if label in seen:
            raise ConfigError(
                f"{source}: fields '{seen[label]}' and '{where}' are both dataset '{label}'; give one "
                f"of them a different label"
            )
        seen[label] = where


def _check_conditions(config: StudyConfig, source: str) -> None:
    """Every trained condition's training set is one of targets.sets, known before any sampling."""
    sets = [s.name for s in config.targets.sets]
    for i, condition in enumerate(config.conditions):
        if condition.trained and condition.training_set not in sets:
            raise ConfigError(
                f"{source}: field 'conditions.{i}.training_set': '{condition.name}' is trained on the training set "
                f"'{condition.training_set}', but targets.sets has only {', '.join(sets) or 'none'}"
            )
        if condition.objective in LOCAL_ONLY_OBJECTIVES and config.training.backend == "hosted":
            raise ConfigError(
                f"{source}: field 'conditions.{i}.objective': hosted fine-tuning trains sft only, not "
                f"{condition.objective} ('{condition.name}'); use training.backend lora"
            )
        if condition.training and config.training.backend == "hosted":
            raise ConfigError(
                f"{source}: field 'conditions.{i}.training': hosted fine-tuning takes no per-condition LoRA "
                f"options ('{condition.name}'); drop them or use training.backend lora"
            )


def _check_engine_options(config: StudyConfig, source: str) -> None:
    """Every key of `model.options` (and the judge's) is an option of that model's engine kind."""
    models = [("model", config.model)]
    if config.grading.judge_model is not None:
        models.append(("grading.judge_model", config.grading.judge_model))
    for field, model in models:
        for key in model.unknown_options():
            raise ConfigError(
                f"{source}: field '{field}.options.{key}': not an option of the {model.engine} "
                f"engine (options: {', '.join(model.option_names())})"
            )


def load_config(path: str | Path) -> StudyConfig:
    return parse_config(read_config_file(path), source=str(path))


def read_run_config(path: str | Path) -> dict[str, Any]:
    """RUN/config.yaml as the study config it must be (validated by StudyConfig, without the checks that need the
    run's machine, such as data paths); returned as written. Not UTF-8, not YAML or a wrong field is one line naming
    the file (and line or field)."""
    from metaconf.records import validate

    raw = read_mapping(path)
    validate(StudyConfig, raw, str(path))
    return raw
