"""Typed run records: the rows a study writes to its run folder and the sections of metrics.json, each one model.

Writers build a model and write `to_row()`, which gives the same keys in the same order (and so the same bytes) as
the plain dicts written before these models existed; readers validate every row through the model, so bad input is
one line naming the file, the line and the field (`FILE:LINE: field 'confidence': expected ...`).

- `SinglePrediction`, `PairPrediction`: `RUN/predictions/<condition>__<task>__<dataset>.jsonl`
- `BaselinePrediction`: `RUN/baselines/<method>__<dataset>.jsonl`
- `ConsistencyRecord`: `RUN/consistency/{train,eval}.jsonl`
- `Metrics` (with `MetricRow`, `Comparison`, `BaselinesSection`, `MetacognitionSection`): `RUN/metrics.json`

A prediction's `to_row()` holds the fields it was given (a field left out stays out: `confidence_expected` is
written only by a guided evaluation with log-probabilities); values are checked, not rewritten, except that a
flag becomes true/false and a pairwise choice 1 or 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator

from metaconf.errors import DataError
from metaconf.io import iter_jsonl_objects, read_json

_CHOICES = {"1": 1, "2": 2, "q1": 1, "q2": 2, "first": 1, "second": 2}


# -------------------------------------------------------------------------------------------- checked values
def _flag(value: Any) -> bool:
    """true/false (or 0/1): a grade or a parsed flag."""
    if not isinstance(value, (bool, int, np.bool_)) or value not in (0, 1):
        raise ValueError(f"expected true/false, got {value!r}")
    return bool(value)


def _unit(value: Any) -> float | None:
    """A probability: a number in [0, 1], or null when it was not read; kept as given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"expected a number in [0, 1] or null, got {value!r}")
    return value


def _choice(value: Any) -> int | None:
    """Which question a pairwise reply chose: 1 or 2 (also read from "q1", "first", ...), or null."""
    if value is None:
        return None
    found = _CHOICES.get(str(value).strip().lower())
    if found is None:
        raise ValueError(f"expected 1 or 2 (or null), got {value!r}")
    return found


Flag = Annotated[bool, PlainValidator(_flag)]
Unit = Annotated[float | None, PlainValidator(_unit)]
Choice = Annotated[int | None, PlainValidator(_choice)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Record(BaseModel):
    """A run record: unknown keys are kept (a user's extra column survives a rewrite) and written after ours."""

    model_config = ConfigDict(extra="allow")

    def to_row(self) -> dict[str, Any]:
        """The record as its file holds it: the fields it was given, in the model's order, extra keys last."""
        return self.model_dump(exclude_unset=True)


R = TypeVar("R", bound=BaseModel)


# ------------------------------------------------------------------------------------------------ predictions
class SinglePrediction(Record):
    """One question of the single task: the answer, the stated confidence and the grade."""

    id: str
    dataset: str
    domain: str | None = None
    condition: str | None = None
    task: Literal["single"] = "single"
    raw: str | None = None  # the model's whole reply
    answer: str | None = None
    confidence: Unit = None  # stated confidence; null when unread
    correct: Flag
    parsed: Flag  # answer and confidence both read
    confidence_expected: Unit = None  # guided + logprobs only: probability-weighted confidence

    @property
    def key(self) -> tuple[str, str]:
        """(dataset, id): the item the metrics resample and pair."""
        return (self.dataset, self.id)


class PairPrediction(Record):
    """One pair of the pairwise task: which question the model would rather answer, then both answers."""

    id1: str
    id2: str
    dataset: str
    domain: str | None = None
    condition: str | None = None
    task: Literal["pairwise"] = "pairwise"
    raw: str | None = None
    choice: Choice = None  # 1 or 2; null when unread
    answer1: str | None = None
    answer2: str | None = None
    correct1: Flag
    correct2: Flag
    consistency1: Unit = None  # the base model's consistency on each question (the target the choice should follow)
    consistency2: Unit = None
    p_first: Unit = None  # P(choice = 1) renormalised over '1' and '2'; null without log-probabilities
    parsed: Flag  # choice and both answers read

    @property
    def key(self) -> tuple[str, str, str]:
        """(dataset, id1, id2): the pair the metrics resample and pair."""
        return (self.dataset, self.id1, self.id2)


class BaselinePrediction(Record):
    """One question scored by a confidence method without fine-tuning (metaconf.baselines)."""

    id: str
    dataset: str
    domain: str | None = None
    method: str | None = None
    answer: str | None = None
    confidence: Unit = None
    correct: Flag
    parsed: Flag  # a confidence was produced

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.id)


Prediction = SinglePrediction | PairPrediction
PREDICTION_MODELS: dict[str, type[SinglePrediction] | type[PairPrediction]] = {
    "single": SinglePrediction,
    "pairwise": PairPrediction,
}


class ConsistencyRecord(Record):
    """n answer-only samples of one question, voted: the modal answer and how often the model gave it."""

    id: str
    dataset: str
    domain: str
    answer_type: str
    samples: list[str]  # the n raw completions
    answers: list[str | None]  # extracted answer per sample (None: unparseable)
    modal_answer: str | None
    modal_text: str | None  # how the model wrote the modal answer
    consistency: float = Field(ge=0, le=1)
    modal_correct: bool
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def parse_rate(self) -> float:
        return sum(a is not None for a in self.answers) / len(self.answers) if self.answers else 0.0

    def to_row(self) -> dict[str, Any]:
        """Every field, `meta` included (as the file has always held it)."""
        return self.model_dump()


# -------------------------------------------------------------------------------------------------- metrics.json
class Profile(Record):
    """What a single-task row's stated confidences look like (metaconf.metrics.controls; null without items):
    collapse (distinct values, the most common one's share, entropy in bits, one value on >= 90% of the items)
    and the ECE noise floor (median and middle 95% of a calibrated model's ECE with these confidences and n)."""

    n_distinct: int | None = None
    top_share: float | None = None
    entropy: float | None = None
    collapsed: bool | None = None
    ece_floor: float | None = None
    ece_floor_range: list[float] | None = None


class MetricRow(Record):
    """One (condition, task, dataset) row, or a pooled group's row; each metric and `<metric>_ci` are extra keys
    in the registry's order (metaconf.metrics.registry); single-task rows also hold a `profile`."""

    condition: str
    task: str
    dataset: str
    domain: str | None = None
    in_domain: bool | None = None
    pooled: bool | None = None  # pooled rows only
    datasets: list[str] | None = None  # pooled rows only: the datasets in the group
    n: int = Field(ge=0)
    n_parsed: int | None = Field(None, ge=0)
    n_scored: int | None = Field(None, ge=0)
    profile: Profile | None = None  # single task: collapse and the ECE noise floor

    @model_validator(mode="after")
    def _metric_values(self) -> MetricRow:
        """The extra keys are metrics: a number or null, and `<metric>_ci` a [low, high] pair (or null), so the
        report never meets text where it draws a number."""
        for key, value in (self.model_extra or {}).items():
            if key.endswith("_ci"):
                pair = isinstance(value, list) and len(value) == 2 and all(_is_number(v) or v is None for v in value)
                if value is not None and not pair:
                    raise ValueError(f"{key}: expected [low, high] or null, got {value!r:.40}")
            elif value is not None and not _is_number(value):
                raise ValueError(f"{key}: expected a number or null, got {value!r:.40}")
        return self


class Comparison(Record):
    """metric(condition) - metric(reference) on the items both evaluated, paired. The reference is another
    condition (`reference`, its value under `base`: the comparisons with base and the contrasts) or a baseline
    method (`method`, its value under `method_value`: `baselines.comparisons`, single task only)."""

    method: str | None = None
    condition: str
    reference: str | None = None
    task: str | None = None
    dataset: str
    metric: str
    pooled: bool | None = None
    n: int
    base: float | None = None
    method_value: float | None = None
    value: float | None = None
    diff: float | None = None
    diff_ci: list[float | None] | None = None
    p_value: float | None = None


class MethodRow(Record):
    """One (baseline method, dataset) row with its single-task metrics (extra keys, as in MetricRow) and its
    `profile`; `undefined`: metric -> why it is null for this method (the constant predictor's AUROC)."""

    method: str
    dataset: str
    domain: str | None = None
    in_domain: bool | None = None
    n: int
    n_scored: int | None = None
    profile: Profile | None = None
    undefined: dict[str, str] | None = None


class TeacherGap(Record):
    """The share of the teacher's AUROC above chance that a condition recovered, or why it is undefined."""

    condition: str
    dataset: str
    teacher: str
    n: int
    teacher_auroc: float | None = None
    condition_auroc: float | None = None
    recovered: float | None = None
    recovered_ci: list[float] | None = None
    undefined: str | None = None


class BaselinesSection(Record):
    """metrics.json `baselines` (docs/baselines.md): the methods' rows, their comparisons with the conditions and
    the teacher gap."""

    methods: list[str] = Field(default_factory=list)
    teacher: str | None = None
    rows: list[MethodRow]
    comparisons: list[Comparison] = Field(default_factory=list)
    teacher_gap: list[TeacherGap] = Field(default_factory=list)


class MetacognitionRow(Record):
    """meta-d′, d′, M-ratio and type-2 AUROC of one (condition, dataset) (extra keys: metaconf.metrics.metad)."""

    condition: str
    dataset: str


class MetacognitionSection(Record):
    """metrics.json `metacognition`: how the ratings were binned and modelled, and one row per (condition,
    dataset)."""

    rating_edges: list[float] = Field(default_factory=list)
    model: str | None = None
    n_boot: int | None = None
    rows: list[MetacognitionRow]


class SelectiveCurve(Record):
    """The risk-coverage curve of one condition's or baseline method's stated confidence on one dataset."""

    condition: str | None = None
    method: str | None = None
    dataset: str
    n: int
    risk: list[float | None]  # at SelectiveSection.coverage


class SelectiveSection(Record):
    """metrics.json `selective`: selective answering (answer only the most confident share): the error rate among
    the answers kept at each coverage; AURC and accuracy at 50% / 80% coverage, with intervals, are in the rows."""

    coverage: list[float]
    ties: str | None = None
    curves: list[SelectiveCurve] = Field(default_factory=list)


class RelativeRow(Record):
    """Bradley-Terry relative confidence of one (condition, dataset): the AUROC of the fitted strengths against
    the condition's grades, beside the stated confidence's AUROC on the same questions."""

    condition: str
    dataset: str
    n_questions: int
    n_comparisons: int
    penalty: float | None = None
    auroc: float | None = None
    auroc_ci: list[float] | None = None
    stated_auroc: float | None = None
    stated_auroc_ci: list[float] | None = None


class RelativeSection(Record):
    """metrics.json `relative` (metaconf.metrics.bradley_terry): how the strengths were fitted, and the rows."""

    model: str | None = None
    alpha: float | None = None
    graded_by: str | None = None
    interval: str | None = None
    rows: list[RelativeRow] = Field(default_factory=list)


class Metrics(Record):
    """metrics.json: the stable keys (docs/metrics.md) and `relative` (Bradley-Terry); the study adds `format`,
    `baselines`, `metacognition` and `selective`."""

    model: Any = None
    config: dict[str, Any] = Field(default_factory=dict)
    rows: list[MetricRow]
    pooled: list[MetricRow] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)
    contrasts: list[Comparison] = Field(default_factory=list)
    bootstrap: dict[str, Any] = Field(default_factory=dict)
    relative: RelativeSection | None = None
    format: dict[str, Any] | None = None
    objectives: dict[str, str] | None = None  # trained condition -> its training objective (sft, brier, grpo)
    baselines: BaselinesSection | None = None
    metacognition: MetacognitionSection | None = None
    selective: SelectiveSection | None = None


# -------------------------------------------------------------------------------------------------- validating
def _problem(exc: ValidationError) -> str:
    """The first error of a validation as `field 'a.0.b': what is wrong`."""
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in err["loc"])
    if err["type"] == "missing":
        return f"field '{field}': missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] != "value_error":
        msg += f", got {err.get('input')!r:.80}"
    return f"field '{field}': {msg}"


def validate(model: type[R], value: Any, where: str) -> R:
    """`value` as a `model` (kept when it is one already); bad input raises DataError `WHERE: field 'x': ...`."""
    if isinstance(value, model):
        return value
    if not isinstance(value, Mapping):
        raise DataError(f"{where}: expected an object, got {type(value).__name__}")
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        raise DataError(f"{where}: {_problem(exc)}") from None


def validate_rows(model: type[R], rows: Iterable[Any], where: str) -> list[R]:
    """Every row as a `model`; an error names `WHERE: row N` (1-based)."""
    return [validate(model, row, f"{where}: row {i + 1}") for i, row in enumerate(rows)]


def _read_jsonl(model: type[R], path: str | Path) -> list[R]:
    return [validate(model, row, f"{path}:{lineno}") for lineno, row in iter_jsonl_objects(path)]


# ----------------------------------------------------------------------------------------------------- readers
def prediction_key(path: str | Path) -> tuple[str, str, str]:
    """(condition, task, dataset) from a prediction file's name `<condition>__<task>__<dataset>.jsonl`."""
    parts = Path(path).stem.split("__")
    if len(parts) != 3:
        raise DataError(f"{path}: expected a name <condition>__<task>__<dataset>.jsonl")
    if parts[1] not in PREDICTION_MODELS:
        raise DataError(f"{path}: unknown task {parts[1]!r} in the name (expected single or pairwise)")
    return parts[0], parts[1], parts[2]


def read_predictions(path: str | Path) -> list[SinglePrediction] | list[PairPrediction]:
    """One prediction file's rows, typed by the task in its name."""
    return _read_jsonl(PREDICTION_MODELS[prediction_key(path)[1]], path)


def read_run_predictions(run_dir: str | Path) -> dict[tuple[str, str, str], list[Prediction]]:
    """Every prediction file of a run folder, keyed by (condition, task, dataset), in file-name order."""
    return {
        prediction_key(path): read_predictions(path) for path in sorted((Path(run_dir) / "predictions").glob("*.jsonl"))
    }


def read_baseline_predictions(path: str | Path) -> list[BaselinePrediction]:
    """One baseline method's rows on one dataset (`RUN/baselines/<method>__<dataset>.jsonl`)."""
    return _read_jsonl(BaselinePrediction, path)


def read_consistency(path: str | Path) -> list[ConsistencyRecord]:
    """A consistency file's records (`RUN/consistency/eval.jsonl`)."""
    return _read_jsonl(ConsistencyRecord, path)


def read_metrics(path: str | Path) -> Metrics:
    """metrics.json, validated: a missing or mistyped field is one line naming the file and the field's path."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing (run the evaluation stage first: `metaconf evaluate`)")
    return validate(Metrics, read_json(path), str(path))


def read_recalibration(path: str | Path) -> dict[str, dict[str, Any]]:
    """recalibration.json's maps, condition -> method -> fitted map (or {"error": why}); a file of another shape is
    one line naming the file and the field."""
    data = read_json(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("maps"), Mapping):
        raise DataError(f"{path}: field 'maps': expected an object of condition -> method -> map")
    for condition, methods in data["maps"].items():
        if not isinstance(methods, Mapping) or not all(isinstance(m, Mapping) for m in methods.values()):
            raise DataError(f"{path}: field 'maps.{condition}': expected an object of method -> map")
    return {condition: dict(methods) for condition, methods in data["maps"].items()}
