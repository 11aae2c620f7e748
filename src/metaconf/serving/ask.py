"""Use a run's model: ask questions of one condition (the base model, or base + a trained adapter / hosted model)
and get its answer and stated confidence, optionally mapped through the run's fitted recalibration.

The engine, template, sampling settings and completion store are the run's own (RUN/config.yaml,
RUN/completions.sqlite), so asking a question the run already answered costs nothing, and the reply format is
guided wherever the evaluation guides it. `Asker` is a run's condition opened once (what `metaconf serve` holds);
`ask` opens one and answers.
"""

from __future__ import annotations

import functools
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


class Asker:
    """One condition of a run, opened once: its engine, reply format (the run's single Task), the evaluation's
    sampling settings and, with `calibrated`, the fitted recalibration map; `answer` answers a batch of questions.

    The run's config, condition and map are checked on opening; the engine is built on first use (`warm_up`)."""

    def __init__(
        self,
        run: str | Path,
        condition: str,
        *,
        calibrated: bool = False,
        calibration: str = "isotonic",
        quiet: bool = True,
        engine: Any = None,
    ):
        from metaconf.study.config import load_config
        from metaconf.tasks.task import Tasks

        self.run_dir = Path(run)
        if not (self.run_dir / "config.yaml").is_file():
            raise ConfigError(f"{self.run_dir}: not a run folder (no config.yaml)")
        self.config = load_config(self.run_dir / "config.yaml")
        _check_condition(self.run_dir, self.config, condition)
        self.condition = condition
        self.mapping = _recalibration(self.run_dir, condition, calibration) if calibrated else None
        self.calibration = calibration if self.mapping is not None else None
        self.quiet = quiet
        self.task = Tasks.of(self.config.targets).single  # the evaluation's template: its stored answers are reused
        if engine is not None:
            self.__dict__["engine"] = engine

    @functools.cached_property
    def engine(self) -> Any:
        """The run's engine for the condition (the base model, or base + the condition's adapter)."""
        from metaconf.study.runner import Study

        return Study(self.config, self.run_dir, quiet=self.quiet).engine(self.condition)

    @functools.cached_property
    def sampling(self) -> Any:
        """The evaluation's settings (guided wherever the engine can guide)."""
        from metaconf.tasks.sampling import Sampling

        return Sampling.evaluation(self.config.evaluation, self.engine)

    def warm_up(self) -> None:
        """Build the engine and resolve the sampling now (a server does this before it listens)."""
        _ = self.sampling

    def calibrate(self, stated: float | None) -> float | None:
        """The stated confidence through the fitted map (unchanged without one; None stays None)."""
        if self.mapping is None or stated is None:
            return stated
        from metaconf.baselines.recalibration import apply_map

        return apply_map(self.mapping, stated)

    def answer(self, questions: Sequence[Question]) -> list[AskResult]:
        """Answer + confidence for each question, in one `engine.generate` call (greedy, the single template)."""
        from metaconf.evaluation import evaluate_single

        if not questions:
            return []
        rows = evaluate_single(self.engine, self.condition, list(questions), self.sampling, self.task)
        return [self._result(q, row) for q, row in zip(questions, rows, strict=True)]

    def _result(self, q: Question, row: dict[str, Any]) -> AskResult:
        stated = row["confidence"]
        return AskResult(
            id=q.id,
            question=q.question,
            answer=self.task.answer_text(row["raw"]).strip() or None,
            confidence=self.calibrate(stated),
            stated_confidence=stated,
            condition=self.condition,
            raw=row["raw"],
            correct=bool(row["correct"]) if q.answers else None,
            calibration=self.calibration,
        )


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
    asker = Asker(run, condition, calibrated=calibrated, calibration=calibration, quiet=quiet, engine=engine)
    items = [questions] if isinstance(questions, (str, Question)) else list(questions)
    return asker.answer([q if isinstance(q, Question) else as_question(q) for q in items])
