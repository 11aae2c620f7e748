"""Use a run's model: ask questions of one condition (the base model, or base + a trained adapter / hosted model)
and get its answer and stated confidence, optionally mapped through the run's fitted recalibration.

The engine, template, sampling settings and completion store are the run's own (RUN/config.yaml,
RUN/completions.sqlite), so asking a question the run already answered costs nothing, and the reply format is
guided wherever the evaluation guides it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metaconf.data import Question
from metaconf.data.ids import short_hash
from metaconf.errors import ConfigError, DataError
from metaconf.records import read_recalibration


@dataclass
class AskResult:
    """One answer. `confidence` is the stated confidence in [0, 1] (calibrated when asked for; None when the
    model's reply held none); `stated_confidence` is always what the model said."""

    id: str
    question: str
    answer: str | None
    confidence: float | None
    stated_confidence: float | None
    condition: str
    raw: str
    correct: bool | None = None  # only when the question came with a gold answer
    calibration: str | None = None  # the recalibration map applied, if any

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (`metaconf ask --json`): `answer` (str) and `confidence` first."""
        return {
            "answer": self.answer or "",
            "confidence": self.confidence,
            **{k: v for k, v in asdict(self).items() if k not in ("answer", "confidence")},
        }


def as_question(text: str) -> Question:
    """A free-text question (open answer) with no gold answer."""
    if not isinstance(text, str) or not text.strip():
        raise DataError("ask: the question is empty")
    text = text.strip()
    return Question(
        id=f"ask/{short_hash(text)}",
        dataset="ask",
        domain="ask",
        question=text,
        choices=None,
        answers=[],
        answer_type="open",
    )


def _recalibration(run_dir: Path, condition: str, method: str) -> dict[str, Any]:
    path = run_dir / "baselines" / "recalibration.json"
    if not path.is_file():
        raise ConfigError(
            f"{path}: missing; run the baselines stage (metaconf evaluate {run_dir}) to fit the recalibration"
        )
    maps = read_recalibration(path)
    if condition not in maps:
        raise ConfigError(
            f"{path}: no recalibration fitted for condition {condition!r} (fitted for: "
            f"{', '.join(maps) or 'none'}); it is fitted on the base model's training answers only"
        )
    mapping = maps[condition].get(method)
    if mapping is None or "error" in mapping:
        reason = mapping.get("error") if mapping else "not fitted"
        raise ConfigError(f"{path}: the {method} map of {condition!r} could not be fitted ({reason})")
    return mapping


def _check_condition(run_dir: Path, config: Any, condition: str) -> None:
    if condition != "base" and condition not in config.condition_names:  # the base model is always there
        raise ConfigError(
            f"{run_dir}: condition {condition!r} is not in this run (conditions: {', '.join(config.condition_names)})"
        )
    if condition != "base":
        folder = run_dir / "training" / condition
        if not ((folder / "DONE").is_file() or (folder / "hosted_job.json").is_file()):
            raise ConfigError(f"{folder}: condition {condition!r} has not been trained yet (run the train stage)")


def ask(
    run: str | Path,
    condition: str,
    questions: str | Question | Sequence[str | Question],
    *,
    calibrated: bool = False,
    calibration: str = "isotonic",
    quiet: bool = True,
    engine: Any = None,
) -> list[AskResult]:
    """Answer each question with the run's `condition` (greedy, the single-task template): answer + confidence.

    `calibrated=True` maps the stated confidence through the run's fitted `calibration` map ("isotonic" or
    "platt"; fitted on the base model's stated confidence on the training questions). `engine`: an Engine to
    answer instead of the run's own (e.g. a scripted one in tests); the run's store still caches.
    """
    from metaconf.evaluation import evaluate_single
    from metaconf.study.config import load_config
    from metaconf.study.runner import Study
    from metaconf.tasks.sampling import Sampling
    from metaconf.tasks.task import Tasks

    run_dir = Path(run)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    _check_condition(run_dir, config, condition)
    mapping = _recalibration(run_dir, condition, calibration) if calibrated else None
    items = [questions] if isinstance(questions, (str, Question)) else list(questions)
    qs = [q if isinstance(q, Question) else as_question(q) for q in items]
    if not qs:
        return []
    engine = engine if engine is not None else Study(config, run_dir, quiet=quiet).engine(condition)
    # the evaluation's settings and single template, so a question the run evaluated is answered from its cache
    task = Tasks.of(config.targets).single
    rows = evaluate_single(engine, condition, qs, Sampling.evaluation(config.evaluation, engine), task)
    results = []
    for q, row in zip(qs, rows, strict=True):
        written = task.answer_text(row["raw"]).strip() or None
        stated = row["confidence"]
        confidence = stated
        if mapping is not None:
            from metaconf.baselines.recalibration import apply_map

            confidence = apply_map(mapping, stated)
        results.append(
            AskResult(
                id=q.id,
                question=q.question,
                answer=written,
                confidence=confidence,
                stated_confidence=stated,
                condition=condition,
                raw=row["raw"],
                correct=bool(row["correct"]) if q.answers else None,
                calibration=calibration if mapping is not None else None,
            )
        )
    return results
