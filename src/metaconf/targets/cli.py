"""`metaconf build-data`: sample training answers, fit the calibration map and write the training sets."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from metaconf.flags import Command, moved_under
from metaconf.targets.config import TargetsConfig


class BuildDataOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="The run folder; reruns reuse its completions.sqlite.")


class BuildDataConfig(BaseModel):
    """Which questions train, which model answers them, and how targets and training sets are made."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    datasets: list[str] = Field(
        ["mmlu_pro", "gsm8k", "triviaqa"], description="Registered dataset names (`metaconf datasets`) or data files."
    )
    per_dataset: int = Field(50, le=1_000_000, ge=1, description="Questions drawn from each dataset.")
    held_out: int = Field(
        0,
        le=1_000_000,
        ge=0,
        description=(
            "Questions of each dataset kept out of training (a count, as the study config's data.train[].held_out; "
            "before metaconf 0.2 this flag was a fraction)."
        ),
    )
    model: str = Field("embedded", description="'embedded' (SmolLM2-135M-Instruct) or a local model folder / hub id.")
    targets: TargetsConfig = Field(default_factory=TargetsConfig, description="Sampling and calibrated targets.")


def _build_data(options: BuildDataOptions, config: BuildDataConfig, source: str) -> int:
    from metaconf.data import load_dataset, split_questions
    from metaconf.engines import get_engine
    from metaconf.io import write_text_atomic
    from metaconf.targets.stage import build_data

    questions = []
    for name in config.datasets:
        qs = load_dataset(name, limit=config.per_dataset)
        if config.held_out:
            qs, _ = split_questions(qs, config.held_out, seed=config.targets.seed)
        questions += qs
    engine = get_engine("hf", model=config.model, store=options.out / "completions.sqlite")
    summary = build_data(options.out, engine, questions, config.targets)
    for name, stats in summary["consistency"].items():
        print(
            f"{name:>10}: n={stats['n']} parse_rate={stats['parse_rate']:.3f} "
            f"accuracy={stats['accuracy']:.3f} mean_consistency={stats['mean_consistency']:.3f}"
        )
    for name, card in summary["sets"].items():
        note = f" (EMPTY: {card['empty']})" if card.get("empty") else ""
        print(f"training set {name}: {card['n_examples']} examples -> {options.out / 'training_sets' / name}{note}")
    write_text_atomic(options.out / "build_data_summary.json", json.dumps(summary, indent=2) + "\n")
    return 0


COMMANDS = [
    Command(
        "build-data",
        help="build the SFT training sets (consistency -> calibrated targets -> JSONL)",
        description="Sample each training question's answer n times, fit the consistency -> accuracy map and write "
        "RUN/training_sets/<condition>/ (HF chat JSONL, hosted JSONL, data cards). Reruns reuse "
        "RUN/completions.sqlite.",
        options=BuildDataOptions,
        config=BuildDataConfig,
        upgrade=moved_under("targets", BuildDataConfig),
        run=_build_data,
        run_folder="out",
        creates_run_folder=True,
        deprecated={"--n-samples": "targets.n_samples", "--seed": "targets.seed"},
    ),
]
