"""A small study config and the real Study orchestrator driven by a scripted model, for the pipeline tests
(tests/test_study.py, test_baselines.py, test_ask.py, ...): every stage runs for real, in seconds."""

from __future__ import annotations

from typing import Any

from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import DataError
from metaconf.study.runner import Study

SMALL = {
    "name": "small",
    "data": {
        "train": [{"name": "mmlu_pro", "train": 12, "held_out": 6}, {"name": "gsm8k", "train": 12, "held_out": 6}],
        "eval": [{"name": "truthfulqa", "n": 6}],
    },
    "targets": {"n_samples": 4},
    "evaluation": {"pairs_per_dataset": 6, "consistency_samples": 4, "n_boot": 100},
}


def scripted_answer(messages: list[dict[str, str]], sample_index: int) -> str:
    """A fake model: 'A' for multiple choice, '12' for numbers, confidence 70; how consistently it gives that
    answer when sampled depends on the question (every k-th sample, k from 1 to 4), so consistency varies."""
    text = messages[-1]["content"]
    if "Choice:" in text:
        return f"Choice: {1 + sample_index % 2}\nAnswer 1: A\nAnswer 2: 12"
    mc = "\nA. " in text
    if "Confidence" in text:
        return f"Answer: {'A' if mc else '12'}\nConfidence: 70"
    k = 1 + len(text) % 4
    if sample_index % k == 0:
        return "Answer: A" if mc else "Answer: 12"
    return f"Answer: {'BCD'[sample_index % 3]}" if mc else f"Answer: {20 + sample_index}"


class ScriptedStudy(Study):
    """The real orchestrator with a scripted model; training is skipped (no weights to train)."""

    def engine(self, condition: str = "base") -> ScriptedEngine:
        return ScriptedEngine(scripted_answer, store=self.store, name=f"scripted-{condition}", quiet=True)


class CountingStudy(ScriptedStudy):
    """A ScriptedStudy that keeps every engine it hands out, so a test can tell what a (re)run generated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engines: list[ScriptedEngine] = []

    def engine(self, condition: str = "base") -> ScriptedEngine:
        engine = super().engine(condition)
        self.engines.append(engine)
        return engine

    def generated(self) -> int:
        """How many completions the engines were asked for (a stored completion is never asked for)."""
        return sum(len(e.calls) for e in self.engines)


def scripted_run(folder: Any) -> Any:
    """A base-only run folder made by the scripted model through metrics (for `ask` and `serve` tests)."""
    from metaconf.study.config import parse_config

    run = folder / "run"
    ScriptedStudy(parse_config({**SMALL, "conditions": ["base"]}), run, quiet=True).run(
        ("data", "targets", "consistency", "evaluate", "baselines", "metrics")
    )
    return run


class FailingStudy(ScriptedStudy):
    """A ScriptedStudy whose consistency stage fails with a DataError (the stages before it store their work)."""

    def stage_consistency(self) -> str:
        raise DataError(f"{self.run_dir / 'consistency'}: no room left")
