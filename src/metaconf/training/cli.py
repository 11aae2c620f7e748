"""`metaconf train` and `metaconf merge`. Their flags come from LoraTrainConfig's and HostedTrainConfig's fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from metaconf.conditions import TRAINED_CONDITIONS, Condition, Objective
from metaconf.errors import ConfigError
from metaconf.flags import Command, moved_under
from metaconf.names import Name
from metaconf.training.config import LoraTrainConfig
from metaconf.training.hosted import HostedTrainConfig


class TrainOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="The run folder (its training_sets/ hold what is trained).")
    demo_defaults: bool = Field(
        False,
        description="Start from the demo's fast CPU settings (LoraTrainConfig.for_cpu_demo()) instead of the defaults.",
    )
    redo: bool = Field(
        False,
        description="Replace a finished adapter trained with other settings or data (without it, such a "
        "condition is refused and its adapter kept).",
    )


class TrainConfig(BaseModel):
    """What `metaconf train` fine-tunes, and how: LoRA on local hardware, or a hosted job when `hosted` is set."""

    model_config = ConfigDict(extra="forbid")

    conditions: list[Name] = Field(list(TRAINED_CONDITIONS), description="Conditions to train (their training sets).")
    model: str = Field("embedded", description="'embedded' (SmolLM2-135M-Instruct) or a model folder / hub id.")
    objective: Objective = Field(
        "sft",
        description="The training objective of every condition trained (sft, brier, grpo; docs/training.md, "
        "'Objectives'); hosted jobs train sft only.",
    )
    lora: LoraTrainConfig = Field(default_factory=LoraTrainConfig, description="LoRA settings.")
    hosted: HostedTrainConfig | None = Field(
        None, description="Fine-tune a provider's model through its API instead (set hosted.base_model)."
    )


def _preset(options: TrainOptions) -> tuple[dict[str, Any], str]:
    if options.demo_defaults:
        return {"lora": LoraTrainConfig.for_cpu_demo().model_dump()}, "train's demo defaults"
    return {}, "train config"


def _train(options: TrainOptions, config: TrainConfig, source: str) -> int:

    if config.hosted is not None:
        if config.objective != "sft":
            raise ConfigError(
                f"{source}: field 'objective': hosted fine-tuning trains sft only, not {config.objective}"
            )
        from metaconf.training.hosted import hosted_conditions

        for cond, model in hosted_conditions(options.run, config.hosted, config.conditions).items():
            print(f"{cond}: {model}")
        return 0
    from metaconf.training.lora import train_conditions

    records = [Condition(name=c, training_set=c, objective=config.objective) for c in config.conditions]
    for cond, adapter in train_conditions(options.run, config.model, config.lora, records, redo=options.redo).items():
        print(f"{cond}: {adapter}")
    return 0


class MergeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field("embedded", description="The base model: 'embedded' or a folder / hub id.")
    adapter: Path = Field(description="The adapter folder (RUN/training/<condition>/adapter).")
    out: Path = Field(description="Where to write the merged model.")


def _merge(options: MergeOptions) -> int:
    from metaconf.training.lora import merge_adapter

    print(merge_adapter(options.model, options.adapter, options.out))
    return 0


def _old_lora_flags() -> dict[str, str | tuple[str, Any]]:
    """metaconf 0.1's `--rank`, `--no-fast-loss`, ... -> the `lora.` fields they set (kept for one release)."""
    old: dict[str, str | tuple[str, Any]] = {}
    for name, info in LoraTrainConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if info.annotation is bool:
            old[flag], old["--no-" + flag[2:]] = (f"lora.{name}", True), (f"lora.{name}", False)
        else:
            old[flag] = f"lora.{name}"
    return old


COMMANDS = [
    Command(
        "train",
        help="fine-tune one LoRA adapter (or hosted job) per condition from RUN/training_sets/",
        description="Trains RUN/training_sets/<cond>/train.jsonl into RUN/training/<cond>/ (adapter/, log.jsonl, "
        "loss.png, DONE). Finished conditions are skipped, interrupted ones resume. Runs under `torchrun` / "
        "`accelerate launch` for several processes or GPUs. Setting hosted.base_model fine-tunes that provider "
        "model through its API instead of LoRA.",
        options=TrainOptions,
        config=TrainConfig,
        preset=_preset,
        upgrade=moved_under("lora", TrainConfig),
        run=_train,
        run_folder="run",
        deprecated={
            **_old_lora_flags(),
            "--hosted": "hosted.base_model",
            "--base-url": "hosted.base_url",
            "--api-key-env": "hosted.api_key_env",
            "--suffix": "hosted.suffix",
            "--hosted-epochs": "hosted.epochs",
            "--restart-failed": ("hosted.restart_failed", True),
        },
    ),
    Command(
        "merge",
        help="fold a LoRA adapter into its base model and save the full model",
        description="Merge RUN/training/<condition>/adapter into its base model and save a full model folder "
        "(servable without PEFT).",
        options=MergeOptions,
        run=_merge,
    ),
]
