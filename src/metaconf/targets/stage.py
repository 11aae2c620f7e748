"""The targets stage: training questions -> consistency samples -> calibration map -> training sets on disk.

Writes, each file atomically: RUN/consistency/train.jsonl, RUN/calibration_map.json, RUN/templates.json (merged
with what is there) and RUN/training_sets/<condition>/{train.jsonl, hosted.jsonl, examples.jsonl, card.md,
card.json}. Samples come through the engine's store, so a rerun regenerates nothing already sampled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metaconf.data.schema import Question
from metaconf.engines.base import Engine
from metaconf.errors import DataError
from metaconf.io import read_json, write_json, write_jsonl, write_text_atomic
from metaconf.names import inside
from metaconf.targets.calibration import CalibrationMap
from metaconf.targets.config import TargetsConfig
from metaconf.targets.consistency import ConsistencyRecord, sample_consistency
from metaconf.targets.examples import build_training_set
from metaconf.targets.export import write_training_set
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.task import Tasks
from metaconf.tasks.templates import template_record


def consistency_summary(records: Sequence[ConsistencyRecord]) -> dict[str, Any]:
    """Per dataset and overall: questions, sample parse rate, modal-answer accuracy, mean consistency."""
    groups: dict[str, list[ConsistencyRecord]] = defaultdict(list)
    for r in records:
        groups[r.dataset].append(r)
        groups["all"].append(r)

    def stats(rs: list[ConsistencyRecord]) -> dict[str, Any]:
        n = len(rs)
        return {
            "n": n,
            "parse_rate": round(sum(r.parse_rate for r in rs) / n, 4),
            "modal_parsed": round(sum(r.modal_answer is not None for r in rs) / n, 4),
            "accuracy": round(sum(r.modal_correct for r in rs) / n, 4),
            "mean_consistency": round(sum(r.consistency for r in rs) / n, 4),
        }

    return {name: stats(rs) for name, rs in sorted(groups.items())}


def _merge_templates(path: Path, names: list[str]) -> None:
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = read_json(path)
        except DataError:
            existing = {}
    existing.update(template_record(names))
    write_json(path, existing)


def build_data(
    run_dir: str | Path,
    engine: Engine,
    train_questions: Sequence[Question],
    config: TargetsConfig | None = None,
    tasks: Tasks | None = None,
) -> dict[str, Any]:
    """Run the stage on training questions only, in the formats of `tasks` (default: the templates `config`
    names); returns a summary (consistency stats, map table, cards, and `format`: the reply format used).
    A set that gets no examples (e.g. every target equal, so no pair meets the gap) writes only its card, whose
    `empty` field says why; its `n_examples` is 0 and it has no train.jsonl."""
    config = config or TargetsConfig()
    run = Path(run_dir)
    questions: dict[str, Question] = {}
    for q in train_questions:
        if q.id in questions:
            raise DataError(f"training questions: duplicate id {q.id!r}")
        questions[q.id] = q
    if not questions:
        raise DataError("training questions: none given")
    tasks = tasks or Tasks.of(config)
    sampling = Sampling.targets(config, engine)
    records = sample_consistency(engine, list(questions.values()), config.n_samples, sampling, tasks.answer)
    write_jsonl(run / "consistency" / "train.jsonl", [r.to_row() for r in records])
    cmap = CalibrationMap.fit(records, config.n_bins, config.by_domain, config.min_bin_count)
    write_text_atomic(run / "calibration_map.json", cmap.to_json() + "\n")
    _merge_templates(run / "templates.json", [config.answer_template, config.single_template, config.pairwise_template])
    cards = {}
    for spec in config.sets:
        examples = build_training_set(spec, records, questions, cmap, config, tasks)
        reason = None
        if not examples:
            reason = (
                f"no two eligible questions have calibrated targets at least pair_gap={config.pair_gap} apart"
                if spec.task != "single"
                else "no eligible question (none has a modal answer)"
            )
        cards[spec.name] = write_training_set(
            inside(run, "training_sets", spec.name), spec.name, examples, config.n_bins, cmap.markdown(), reason
        )
    return {
        "consistency": consistency_summary(records),
        "calibration": cmap.table(),
        "sets": cards,
        "format": sampling.format,
    }
