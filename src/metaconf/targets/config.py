"""Settings of the targets stage (`build_data`): one typed model whose field descriptions are the docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from metaconf.bounds import SEED_MAX
from metaconf.names import Name


class TrainingSetSpec(BaseModel):
    """One training set (a training condition) to build."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(
        description="Condition name: the folder under training_sets/ (e.g. single, pairwise, multitask).",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    task: Literal["single", "pairwise", "multitask"] = Field(description="Which examples the set holds.")
    size: int | None = Field(
        le=10_000_000,
        default=None,
        ge=1,
        description=(
            "Number of examples; None: every eligible question (single), as many pairs as eligible questions "
            "(pairwise), or the single set's size (multitask). Fewer are written when fewer exist; the card says so."
        ),
    )
    single_share: float = Field(
        default=0.5, ge=0.0, le=1.0, description="multitask only: share of single-question examples in the mix."
    )
    domains: list[str] | None = Field(
        default=None,
        description=(
            "Restrict the set to questions of these training domains (None: all). The calibration map is still "
            "fitted on all training questions."
        ),
    )
    shuffle_targets: bool = Field(
        default=False,
        description=(
            "A control: permute the confidence targets across the set's questions (seeded by targets.seed and the "
            "set's name), keeping each question's answer, the format and the size; pairs are chosen and labelled "
            "by the permuted targets. A condition trained on it can learn the format and the base rate, not which "
            "answers to doubt; the findings compare it with the condition trained on its twin (same task, size, "
            "mix and domains, unshuffled)."
        ),
    )


def default_sets() -> list[TrainingSetSpec]:
    return [
        TrainingSetSpec(name="single", task="single"),
        TrainingSetSpec(name="pairwise", task="pairwise"),
        TrainingSetSpec(name="multitask", task="multitask"),
    ]


class TargetsConfig(BaseModel):
    """How training answers are sampled, turned into calibrated targets and into SFT sets."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_samples: int = Field(le=1000, default=10, ge=1, description="Answer samples per training question (consistency).")
    format: Literal["guided", "free"] = Field(
        default="guided",
        description=(
            "guided: each answer sample is constrained to the answer template's format (the model still chooses the "
            "answer); free: unconstrained text, parsed afterwards (the paper's setting). guided falls back to free, "
            "with a warning, on an engine that cannot guide."
        ),
    )
    temperature: float = Field(le=10, default=1.0, ge=0.0, description="Sampling temperature of the answer samples.")
    max_new_tokens: int | None = Field(
        le=131_072, default=None, ge=1, description="Token limit per answer sample; None: the answer template's."
    )
    seed: int = Field(
        le=SEED_MAX, default=0, ge=0, description="Seeds sampling, target noise, subsampling, pairing and mixing."
    )
    n_bins: int = Field(le=1000, default=10, ge=1, description="Equal-width consistency bins of the calibration map.")
    by_domain: bool = Field(
        default=False,
        description=(
            "Fit one map per domain (nearly empty bins shrink toward the pooled map) instead of one pooled map."
        ),
    )
    min_bin_count: int = Field(
        le=1_000_000,
        default=5,
        ge=0,
        description=("Bins with fewer questions are padded to this many pseudo-observations at the pooled accuracy."),
    )
    noise: float = Field(
        default=0.05,
        ge=0.0,
        le=0.5,
        description="Half-width of the uniform noise added to each single-question target.",
    )
    subsample_max_per_bin: int | None = Field(
        le=10_000_000,
        default=None,
        ge=1,
        description=("Cap on questions per consistency bin in the training sets (seeded subsample); None: no cap."),
    )
    pair_gap: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description=("A pair needs calibrated (noise-free) targets differing by at least this much."),
    )
    cross_domain_share: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Share of pairs whose questions come from different domains (topped up from the other kind if short)."
        ),
    )
    answer_template: str = Field(default="answer", description="Template for the answer samples.")
    single_template: str = Field(default="single", description="Template for single-question examples.")
    pairwise_template: str = Field(default="pairwise", description="Template for pairwise examples.")
    sets: list[TrainingSetSpec] = Field(default_factory=default_sets, description="The training sets to build.")

    @model_validator(mode="after")
    def _unique_names(self) -> TargetsConfig:
        names = [s.name for s in self.sets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sets: duplicate name(s) {', '.join(dupes)}")
        return self
