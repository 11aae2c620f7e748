"""The study config: one typed, validated YAML file describes a whole study.

Every field carries its help text (`Field(description=...)`), so docs and errors come from one place. An invalid
config is rejected before any work, with an error that names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metaconf.errors import ConfigError
from metaconf.targets import TargetsConfig
from metaconf.training.config import LoraTrainConfig

BASE = "base"
BUILTIN_CONDITIONS = ("single", "pairwise", "multitask")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Which model answers, and through which engine."""

    engine: Literal["embedded", "hf", "vllm", "openai"] = Field(
        "embedded", description="embedded (SmolLM2-135M shipped with metaconf), hf (transformers), vllm, or openai "
        "(any OpenAI-compatible server)."
    )
    name: str | None = Field(
        None, description="Model path or hub id (hf, vllm), or the served model name (openai)."
    )
    base_url: str | None = Field(None, description="openai engine: the server's base URL, e.g. http://host:8000/v1.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai engine: the environment variable holding the API key (never the key)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for the engine (e.g. tensor_parallel_size)."
    )
    served_adapters: dict[str, str] = Field(
        default_factory=dict, description="openai engine with training.backend lora: the name the server serves "
        "each condition's adapter under (vllm serve --lora-modules NAME=RUN/training/CONDITION/adapter); "
        "default: the condition's name."
    )
    local_path: str | None = Field(
        None, description="openai engine with training.backend lora: the served model's local folder (what LoRA "
        "trains on); default: name."
    )

    @model_validator(mode="after")
    def _needs(self) -> "ModelConfig":
        if self.engine in ("hf", "vllm", "openai") and not self.name:
            raise ValueError(f"engine {self.engine!r} needs model.name")
        if self.engine == "openai" and not self.base_url:
            raise ValueError("engine 'openai' needs model.base_url")
        return self


class TrainDataset(_Strict):
    """A training-domain dataset: some questions train, others are held out for in-domain evaluation."""

    name: str = Field(description="A registered dataset name (`metaconf datasets`) or a data file.")
    train: int = Field(50, ge=1, description="Training questions drawn from it.")
    held_out: int = Field(24, ge=2, description="Held-out questions for in-domain evaluation (never trained on).")
    path: str | None = Field(None, description="A full copy of the dataset (folder or file); default: bundled sample.")
    split: str | None = Field(None, description="Which split to draw from; default: the dataset's default split.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Field mapping for user files (question=, answers=, choices=, ...)."
    )


class EvalDataset(_Strict):
    """A new-domain dataset, evaluated only."""

    name: str = Field(description="A registered dataset name (`metaconf datasets`) or a data file.")
    n: int = Field(24, ge=2, description="Questions evaluated.")
    path: str | None = Field(None, description="A full copy of the dataset (folder or file); default: bundled sample.")
    split: str | None = Field(None, description="Which split to draw from; default: the dataset's default split.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Field mapping for user files (question=, answers=, choices=, ...)."
    )


class DataConfig(_Strict):
    train: list[TrainDataset] = Field(description="Training domains (their held-out questions are in-domain tests).")
    eval: list[EvalDataset] = Field(default_factory=list, description="New-domain test datasets.")
    seed: int = Field(0, description="Seed of the question draws and the train / held-out split.")

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
        description="LoRA settings changed for some conditions, e.g. {multitask: {epochs: 2}} (multitask mixes two "
        "reply formats and may need more steps to keep them apart).",
    )
    hosted_base_model: str | None = Field(
        None, description="hosted: the provider's fine-tunable model name (default: model.name)."
    )


    @model_validator(mode="after")
    def _valid_changes(self) -> "TrainingConfig":
        for condition in self.lora_by_condition:
            try:
                self.lora_for(condition)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"lora_by_condition.{condition}.{_location(first)}: {first['msg']}") from None
        return self

    def lora_for(self, condition: str) -> LoraTrainConfig:
        """The LoRA settings of one condition: `lora` with that condition's changes."""
        changes = self.lora_by_condition.get(condition)
        return LoraTrainConfig.model_validate({**self.lora.model_dump(), **changes}) if changes else self.lora


class EvaluationConfig(_Strict):
    pairs_per_dataset: int = Field(24, ge=1, description="Pairs of held-out questions per dataset, pairwise task.")
    consistency_samples: int = Field(
        10, ge=2, description="Base-model samples per evaluation question, for the consistency ranking (AUC_c)."
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of evaluation answers (0 = greedy).")
    logprobs: int = Field(5, ge=0, description="Top log-probabilities requested per token (pairwise P(choice)); 0: off.")
    n_boot: int = Field(1000, ge=50, description="Bootstrap resamples for confidence intervals.")
    seed: int = Field(0, description="Seed of pair draws and bootstrap.")


class StudyConfig(_Strict):
    """A whole study: data, model, targets, conditions, training and evaluation."""

    name: str = Field("study", description="A name for the run, shown in the report.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The model under study.")
    data: DataConfig = Field(description="Training and evaluation datasets.")
    targets: TargetsConfig = Field(default_factory=TargetsConfig, description="Sampling and calibrated targets.")
    conditions: list[str] = Field(
        default_factory=lambda: [BASE, *BUILTIN_CONDITIONS],
        description="Conditions to compare: base (no fine-tuning) and trained ones (single, pairwise, multitask).",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Fine-tuning settings.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="Evaluation settings.")

    @field_validator("conditions")
    @classmethod
    def _known_conditions(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in (BASE, *BUILTIN_CONDITIONS)]
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown}; choose from {[BASE, *BUILTIN_CONDITIONS]}")
        if len(set(v)) != len(v):
            raise ValueError("conditions repeat")
        return v

    @model_validator(mode="after")
    def _changes_name_conditions(self) -> "StudyConfig":
        extra = sorted(set(self.training.lora_by_condition) - set(self.trained_conditions))
        if extra:
            raise ValueError(f"training.lora_by_condition names {extra}, not trained conditions of this study")
        return self

    @property
    def trained_conditions(self) -> list[str]:
        return [c for c in self.conditions if c != BASE]


def _location(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def parse_config(raw: dict[str, Any], source: str = "config") -> StudyConfig:
    """Validate a config mapping; raise ConfigError naming the source and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{source}: field '{_location(first)}': {first['msg']}{more}") from None
    _check_datasets(config, source)
    return config


def _check_datasets(config: StudyConfig, source: str) -> None:
    from metaconf.data import list_datasets

    known = {info.name for info in list_datasets()}
    entries = [("data.train", d) for d in config.data.train] + [("data.eval", d) for d in config.data.eval]
    for i, (where, entry) in enumerate(entries):
        index = i if where == "data.train" else i - len(config.data.train)
        if entry.name not in known and not Path(entry.path or entry.name).exists():
            raise ConfigError(
                f"{source}: field '{where}.{index}.name': unknown dataset {entry.name!r} "
                f"(not registered, not a file); see `metaconf datasets`"
            )


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_config(raw, source=str(path))
