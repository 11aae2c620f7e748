"""How one stage samples its replies, as one object: temperature, seed, reply format, log-probabilities, token
limit and grader. The reply format is resolved against the engine once (`Sampling.resolve`) and kept here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from metaconf.tasks.guides import resolve_format


@dataclass(frozen=True)
class Sampling:
    """`guided`: replies constrained to the template's format (already resolved: the engine can guide);
    `logprobs`: top log-probabilities asked for (0: off); `max_new_tokens`: None for the template's limit;
    `grader`: grades answers instead of the rules (e.g. a JudgeGrader; docs/grading.md), None for the rules."""

    temperature: float = 0.0
    seed: int = 0
    guided: bool = False
    logprobs: int = 0
    max_new_tokens: int | None = None
    grader: Any = None

    @property
    def format(self) -> str:
        """What the run folder records: "guided" or "free"."""
        return "guided" if self.guided else "free"

    @classmethod
    def resolve(cls, requested: str, engine: Any, stage: str, **settings: Any) -> Sampling:
        """The settings of a stage whose config asks for format `requested`: guided only where `engine` can
        guide (else free, with one warning naming the stage)."""
        return cls(guided=resolve_format(requested, engine, stage) == "guided", **settings)

    @classmethod
    def evaluation(cls, ev: Any, engine: Any, grader: Any = None) -> Sampling:
        """The evaluation's settings (config `evaluation`): also what the baselines and `ask` use, so the base
        model states its confidence the same way everywhere and stored answers are reused."""
        settings = {"temperature": ev.temperature, "seed": ev.seed, "logprobs": ev.logprobs, "grader": grader}
        return cls.resolve(ev.format, engine, "evaluation", **settings)

    @classmethod
    def consistency(cls, ev: Any, engine: Any) -> Sampling:
        """The consistency stage's samples of the evaluation questions (config `evaluation.consistency_*`)."""
        settings = {"temperature": ev.consistency_temperature, "seed": ev.seed}
        return cls.resolve(ev.consistency_format, engine, "consistency", **settings)

    @classmethod
    def targets(cls, t: Any, engine: Any) -> Sampling:
        """The training answers' samples (config `targets`)."""
        settings = {"temperature": t.temperature, "seed": t.seed, "max_new_tokens": t.max_new_tokens}
        return cls.resolve(t.format, engine, "targets", **settings)

    def but(self, **changes: Any) -> Sampling:
        return replace(self, **changes)
