"""The training objectives (metaconf.conditions.OBJECTIVES): which trainer a LoRA run builds, chosen in one place.

Each objective is an `ObjectiveTrainer`: `build(job, callbacks)` returns a transformers `Trainer` (a TRL trainer)
on the LoRA stack of `training/lora.py`, ready for `.train(resume_from_checkpoint=...)`, with `frozen_split` set
(None, or the first trained layer when it trains on cached lower-layer states, its collator then being a
`FrozenStatesCollator`); `inputs(job)` says what else the run depends on besides the training file, the settings
and the model (a labels file, an option), which goes into the run's fingerprint and train_config.json (sft: nothing,
so sft fingerprints stay what they were). `train_lora` does the rest (resume, records, adapter folder) the same way
for every objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metaconf.conditions import OBJECTIVES
from metaconf.errors import ConfigError

if TYPE_CHECKING:
    from metaconf.training.lora import LoraJob


def _no_inputs(job: LoraJob) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ObjectiveTrainer:
    """How one objective trains: its trainer builder and the extra inputs it depends on."""

    build: Callable[[LoraJob, Sequence[Any]], Any]
    inputs: Callable[[LoraJob], dict[str, Any]] = _no_inputs


def _sft(job: LoraJob, callbacks: Sequence[Any]) -> Any:
    from metaconf.training.lora import build_trainer

    return build_trainer(job, callbacks)


def _grpo(job: LoraJob, callbacks: Sequence[Any]) -> Any:
    from metaconf.training.grpo import build_grpo_trainer

    return build_grpo_trainer(job, callbacks)


def _grpo_inputs(job: LoraJob) -> dict[str, Any]:
    from metaconf.training.grpo import grpo_inputs

    return grpo_inputs(job)


def _brier(job: LoraJob, callbacks: Sequence[Any]) -> Any:
    from metaconf.training.brier import build_brier_trainer

    return build_brier_trainer(job, callbacks)


def _brier_inputs(job: LoraJob) -> dict[str, Any]:
    from metaconf.training.brier import brier_inputs

    return brier_inputs(job)


TRAINERS: dict[str, ObjectiveTrainer] = {
    "sft": ObjectiveTrainer(_sft),
    "brier": ObjectiveTrainer(_brier, _brier_inputs),
    "grpo": ObjectiveTrainer(_grpo, _grpo_inputs),
}
assert set(TRAINERS) == set(OBJECTIVES), "every objective has its trainer"


def objective_trainer(objective: str) -> ObjectiveTrainer:
    """The trainer of `objective` (ConfigError naming the known ones for any other)."""
    if objective not in TRAINERS:
        raise ConfigError(f"objective {objective!r}: not one of {', '.join(TRAINERS)}")
    return TRAINERS[objective]


def objective_inputs(job: LoraJob) -> dict[str, Any]:
    """What the run depends on besides its file, settings and model (empty for sft); part of its fingerprint."""
    inputs = objective_trainer(job.objective).inputs(job)
    return {"name": job.objective, **inputs} if job.objective != "sft" else inputs


def build_objective_trainer(job: LoraJob, callbacks: Sequence[Any] = ()) -> Any:
    """The trainer of `job.objective` for `job`: the one dispatch point between objectives."""
    return objective_trainer(job.objective).build(job, callbacks)
