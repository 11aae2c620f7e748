"""LoRA fine-tuning settings: one typed model whose field descriptions are also the CLI help and the docs."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from metaconf.bounds import SEED_MAX

GRPO_FIELDS = ("grpo_generations", "grpo_beta", "grpo_guided")  # objective grpo only: its fingerprint inputs


class LoraTrainConfig(BaseModel):
    """How to fine-tune a LoRA adapter with TRL's SFTTrainer (loss on the assistant's reply only)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rank: int = Field(16, le=1024, ge=1, description="LoRA rank r (width of the low-rank update).")
    alpha: float = Field(32.0, le=1_000_000, gt=0, description="LoRA alpha; the update is scaled by alpha / rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA branch.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names that get LoRA (e.g. q_proj v_proj), or 'all-linear' for every linear layer "
        "except the output head.",
    )
    layers_to_transform: list[int] | None = Field(
        None,
        description="Only put LoRA on these decoder layers (0-based); None: all layers. Upper layers only "
        "lets backpropagation stop early, which makes CPU training much faster.",
    )
    top_layers: int | None = Field(
        None,
        le=10_000,
        ge=1,
        description="Shortcut for layers_to_transform: LoRA on the last N decoder layers only.",
    )
    learning_rate: float = Field(2e-4, le=1, gt=0, description="Peak learning rate (AdamW).")
    lr_scheduler: str = Field("linear", description="Learning-rate schedule after warmup (transformers name).")
    warmup: float = Field(
        0.03, le=1_000_000, ge=0, description="Warmup: a fraction of all steps if < 1, else a number of steps."
    )
    weight_decay: float = Field(0.0, le=10, ge=0, description="AdamW weight decay.")
    epochs: float = Field(3.0, le=1000, gt=0, description="Passes over the training file.")
    max_steps: int | None = Field(
        None, le=10_000_000, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    batch_size: int = Field(8, le=65_536, ge=1, description="Examples per device per forward pass.")
    grad_accum: int = Field(1, le=65_536, ge=1, description="Forward passes accumulated per optimizer step.")
    max_length: int = Field(
        1024,
        le=1_048_576,
        ge=8,
        description="Longest example in tokens (prompt + reply); longer examples are left out, with a warning, "
        "rather than truncated (truncation would cut the reply the model must learn).",
    )
    group_by_length: bool = Field(
        True, description="Batch examples of similar length together so less compute goes to padding."
    )
    fast_loss: bool = Field(
        True,
        description="Project only the reply positions through the LM head for the loss (much faster on CPU); "
        "False: TRL's own loss (tiled LM head over every position, plus entropy metrics).",
    )
    cache_frozen_layers: bool = Field(
        False,
        description="With LoRA on upper layers only: run the frozen layers below them once per distinct example "
        "(kept in memory, shared across epochs and conditions) and train a model of the upper layers on their "
        "output; the same result at a fraction of the compute per epoch. Memory: hidden size x 4 bytes per "
        "training token (2 in bf16).",
    )
    seed: int = Field(0, le=SEED_MAX, ge=0, description="Seed for LoRA initialisation, data order and dropout.")
    logging_steps: int = Field(5, le=10_000_000, ge=1, description="Write a log.jsonl row every N optimizer steps.")
    save_steps: int = Field(
        50,
        le=10_000_000,
        ge=1,
        description="Save a resumable checkpoint every N optimizer steps (the last two are kept).",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Training precision; 'auto': follow model.dtype (itself 'auto': bf16 on CPUs with "
        "AMX / AVX512-BF16 and on GPUs that support it, fp32 on other CPUs, fp16 on older GPUs).",
    )
    bf16_mode: Literal["weights", "autocast"] = Field(
        "weights",
        description="How bf16 training runs: 'weights': the frozen base weights are stored in bf16 "
        "(half the memory, no casts per step), LoRA weights, gradients and optimizer state stay fp32; "
        "'autocast': fp32 base weights, matmuls in bf16 under torch.autocast (TRL's bf16=True).",
    )
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="Recompute activations in backward to save memory; 'auto': on for GPUs, off on CPU."
    )
    brier_soft_labels: bool = Field(
        False,
        description="Objective brier only: score the stated confidence against the answer's sampled accuracy (the "
        "share of the targets stage's samples graded correct) instead of whether the modal answer is correct.",
    )
    grpo_generations: int = Field(
        4,
        le=256,
        ge=2,
        description="objective grpo: replies sampled per training prompt (GRPO's group; rewards are compared "
        "within it). batch_size counts prompts, so a step generates batch_size x this many replies.",
    )
    grpo_beta: float = Field(
        0.0, le=10, ge=0, description="objective grpo: weight of the KL penalty towards the base model (0: none)."
    )
    grpo_guided: bool = Field(
        True,
        description="objective grpo: sample the replies under their template's guide (always readable); false: "
        "free text, an unreadable reply gets reward 0.",
    )

    @classmethod
    def for_cpu_demo(cls) -> LoraTrainConfig:
        """The demo's settings: SmolLM2-135M's three adapters in minutes on 2 CPU cores (docs/training.md)."""
        return cls(
            rank=8,
            alpha=16.0,
            dropout=0.0,
            top_layers=8,
            cache_frozen_layers=True,
            learning_rate=1e-3,
            epochs=1.0,
            batch_size=2,
            max_length=768,
        )

    def fingerprint(self) -> str:
        """A hash of every setting: a finished adapter is reused only when this matches. `bf16_mode` counts only
        where bf16 actually runs (train_lora adds the resolved precision), so fp32 fingerprints predate it;
        `brier_soft_labels` and the grpo settings only under their objective (its fingerprint inputs,
        training/objectives.py)."""
        settings = self.model_dump(exclude={"bf16_mode", "brier_soft_labels", *GRPO_FIELDS})
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def lora_layers(self, num_layers: int) -> list[int] | None:
        """The decoder layers that get LoRA for a model with `num_layers` layers (None: all of them)."""
        if self.layers_to_transform is not None:
            return list(self.layers_to_transform)
        if self.top_layers is not None:
            return list(range(max(0, num_layers - self.top_layers), num_layers))
        return None
