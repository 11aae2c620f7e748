"""The study's models: the engine of the model under study for each condition, the judge, and what the model
resolves on this machine (number format, weights for training). The Study holds one `StudyModels`.

Nothing here branches on the engine's kind: the model config of each kind builds its engine (`ModelConfig.build`)
and says how it takes an adapter (`adapters`: a PEFT folder or a served name); a built engine says what it can do
(`engine.capabilities`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from metaconf.conditions import BASE
from metaconf.engines import Adapter, CompletionStore, Engine
from metaconf.errors import ConfigError
from metaconf.grading import DEFAULT_JUDGE_TEMPLATE, Grader, JudgeGrader
from metaconf.io import read_json, write_json
from metaconf.memory import release_free_memory
from metaconf.precision import DtypeChoice, announce, announced, run_record
from metaconf.processes import call_in_child
from metaconf.study.config import ModelConfig, StudyConfig

SHARED_PREFILL_DIR = ".shared-prefill"  # RUN/.shared-prefill/: the evaluation's shared prefill, removed after it


class StudyModels:
    """The engines of one study in one run folder. `store` opens the run's completion cache when first needed;
    `isolate`: the number format is resolved in a child process (torch is then never imported by this one, which
    only orchestrates the stages' child processes)."""

    def __init__(
        self,
        config: StudyConfig,
        run_dir: Path,
        store: Callable[[], CompletionStore],
        quiet: bool = False,
        source: str = "config",
        isolate: bool = False,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.store = store
        self.quiet = quiet
        self.source = source
        self.isolate = isolate
        self.base_engine: Engine | None = None
        self._grader: JudgeGrader | None = None
        self._dtype: DtypeChoice | None = None

    # -- what the model resolves on this machine -----------------------------------------------------------------
    def model_path(self) -> str:
        """Where the local model's weights are (what LoRA trains on)."""
        return self.config.model.local_weights()

    def local_model(self) -> bool:
        """Whether metaconf runs the model itself (and so chooses its number format)."""
        return self.config.model.runs_locally

    def dtype(self) -> DtypeChoice | None:
        """model.dtype resolved for this machine (None for a remote model); printed the first time."""
        if self._dtype is None:
            m = self.config.model
            apart = self.isolate and m.runs_locally
            self._dtype = call_in_child(m.dtype_choice, name="metaconf dtype")[0] if apart else m.dtype_choice()
            if self._dtype is not None:
                announce(self._dtype, self.quiet)
        return self._dtype

    def use_dtype(self, choice: DtypeChoice | None) -> None:
        """Take a number format already resolved (and printed) elsewhere: a stage's child process gets its
        parent's (which printed it)."""
        self._dtype = choice
        if choice is not None:
            announced(choice)

    def run_info(self) -> dict[str, Any]:
        """What this invocation resolved on this machine (rewritten by every run): the model's number format."""
        return {"dtype": run_record(self.dtype())}

    def model_label(self) -> str:
        return self.config.model.label()

    # -- engines -------------------------------------------------------------------------------------------------
    def adapter(self, condition: str, spec: ModelConfig | None = None) -> Adapter | None:
        """A trained condition's adapter: its folder in the run and, for a served model, the name it is served
        under (lora: model.served_adapters, default the condition's name; hosted: the fine-tuned model)."""
        if condition == BASE:
            return None
        m, served = spec or self.config.model, condition
        if m.adapters == "served":
            if self.config.training.backend == "lora":
                served = m.served_adapters.get(condition, condition)
            else:
                served = read_json(self.run_dir / "training" / condition / "hosted_job.json")["fine_tuned_model"]
        return Adapter(condition, self.run_dir / "training" / condition / "adapter", served)

    def engine(self, condition: str = BASE) -> Engine:
        """The engine answering for a condition: the base model, or the base model + that condition's adapter."""
        if condition == BASE and self.base_engine is not None:
            return self.base_engine
        engine = self.build(condition)
        if condition == BASE:
            self.base_engine = engine
        self.record_determinism(condition, engine)
        return engine

    def release(self) -> None:
        """Drop the base engine (and a judge built on it) and hand the freed memory back: a stage that loads a model
        of its own (training) then does not hold two copies. The next `engine()` loads it again."""
        self.base_engine = None
        self._grader = None
        release_free_memory()

    def build(self, condition: str, spec: ModelConfig | None = None) -> Engine:
        """A new engine of `spec` (default: the model under study) for a condition."""
        m = spec or self.config.model
        choice = self.dtype() if spec is None else m.dtype_choice()
        ranks = None
        if spec is None and self.config.trained_conditions and self.config.training.backend == "lora":
            ranks = max(self.config.lora_for(c).rank for c in self.config.trained_conditions)
        try:
            return m.build(
                self.store(),
                self.adapter(condition, m),
                quiet=self.quiet,
                dtype=choice.dtype if choice else None,
                max_adapter_rank=ranks,
            )
        except TypeError as exc:  # an option the engine does not take as given (a check missed it)
            if not m.options.given():
                raise
            raise ConfigError(f"{self.source}: field 'model.options': {exc}") from None

    def grader(self, base_engine: Callable[[str], Engine]) -> Grader | None:
        """The evaluation's grader: None for the rules (config grading.method rule), else an LLM judge on
        grading.judge_model (default: the base model under study, from `base_engine`)."""
        g = self.config.grading
        if g.method == "rule":
            return None
        if self._grader is None:
            judge = base_engine(BASE) if g.judge_model is None else self.build(BASE, g.judge_model)
            self._grader = JudgeGrader(judge, g.template or DEFAULT_JUDGE_TEMPLATE, g.max_new_tokens)
        return self._grader

    def record_determinism(self, condition: str, engine: Engine) -> None:
        """RUN/determinism.json: per condition, whether its samples repeat on a rerun (backends differ)."""
        path = self.run_dir / "determinism.json"
        record = read_json(path) if path.is_file() else {}
        if record.get(condition) != engine.determinism:
            record[condition] = engine.determinism
            write_json(path, record)

    def shared_prefill(self, base: Engine) -> Any:
        """Lower-layer prefill shared by the base model and adapters that only change upper layers, where the base
        engine can share it (None otherwise)."""
        if not base.capabilities.shared_prefill:
            return None
        from metaconf.engines.prefill import SharedPrefill
        from metaconf.engines.spill import SpilledEntries

        adapters = [self.run_dir / "training" / c / "adapter" for c in self.config.trained_conditions]
        shared = SharedPrefill.for_adapters(adapters)
        if shared is not None:  # on disk, not in memory: it grows with every evaluation prompt (engines/spill.py)
            shared.entries = SpilledEntries(self.run_dir / SHARED_PREFILL_DIR)
        return shared

    def end_shared_prefill(self, shared: Any) -> None:
        """Drop a shared prefill's entries (and their folder) and detach it from the base engine."""
        if shared is None:
            return
        shared.clear()
        if hasattr(shared.entries, "close"):
            shared.entries.close()
        if self.base_engine is not None:
            self.base_engine.shared_prefill = None
