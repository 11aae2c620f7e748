"""The study orchestrator behind `metaconf run` and `metaconf demo`.

Stages run in order, each reading what the previous ones stored in the run folder and printing one summary line:
data -> targets -> train -> consistency -> evaluate -> baselines -> metrics -> report. Every completion lives in
`RUN/completions.sqlite` and every trained adapter is marked DONE, so a rerun (after a crash, Ctrl-C or a
finished run) recomputes nothing that is stored.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from metaconf.conditions import BASE
from metaconf.data import Question, load_dataset, split_questions
from metaconf.engines import CompletionStore, Engine
from metaconf.errors import ConfigError, DataError, MetaconfError
from metaconf.evaluation import evaluate_condition, load_predictions, make_pairs, prediction_path
from metaconf.grading import Grader
from metaconf.io import read_json, write_json, write_jsonl, write_text_atomic
from metaconf.lock import RunLock
from metaconf.memory import PeakMeter, release_free_memory
from metaconf.precision import DtypeChoice
from metaconf.processes import call_in_child
from metaconf.records import read_consistency
from metaconf.study.config import ModelConfig, StudyConfig, dataset_entries, dataset_label
from metaconf.study.models import StudyModels
from metaconf.study.stages import BY_NAME, STAGE_NAMES, STAGES, Stage, select
from metaconf.tasks.sampling import Sampling
from metaconf.tasks.task import Tasks


def _rank(seed: int, qid: str) -> str:
    return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()


class Study:
    """One study in one run folder. `source` (the config file) is named in errors about the config's values;
    `isolate` runs each stage that loads a local model in a fresh child process, so the memory it held goes back to
    the system when it ends (the CLI's default; `--in-process` turns it off).

    The run folder is created only once the data loaded, so a config error found then leaves nothing behind."""

    def __init__(
        self,
        config: StudyConfig,
        run_dir: str | Path,
        quiet: bool = False,
        source: str = "config",
        isolate: bool = False,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.source = source
        self.isolate = isolate  # each stage that loads a local model runs in a child process (metaconf.processes)
        self._store: CompletionStore | None = None
        self.train_questions: list[Question] = []
        self.eval_sets: dict[str, list[Question]] = {}  # dataset -> held-out / new-domain questions
        self.in_domain: dict[str, bool] = {}
        self._loaded = False
        self.models = StudyModels(config, self.run_dir, lambda: self.store, quiet, source, isolate)

    @property
    def store(self) -> CompletionStore:
        """The run's completion cache (opening it creates the run folder)."""
        if self._store is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._store = CompletionStore(self.run_dir / "completions.sqlite")
        return self._store

    # -- helpers ------------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    # -- the models (metaconf.study.models) -----------------------------------------------------------------
    def model_path(self) -> str:
        """Where the local model's weights are (what LoRA trains on)."""
        return self.models.model_path()

    def local_model(self) -> bool:
        return self.models.local_model()

    def dtype(self) -> DtypeChoice | None:
        """model.dtype resolved for this machine (None for a remote model); printed the first time."""
        return self.models.dtype()

    def engine(self, condition: str = BASE) -> Engine:
        """The engine answering for a condition: the base model, or the base model + that condition's adapter."""
        return self.models.engine(condition)

    def grader(self) -> Grader | None:
        """The evaluation's grader: None for the rules, else an LLM judge (default: the base model, `engine`)."""
        return self.models.grader(self.engine)

    def _make_engine(self, condition: str, spec: ModelConfig | None = None) -> Engine:
        """A new engine of `spec` (default: the model under study) for a condition."""
        return self.models.build(condition, spec)

    def _record_determinism(self, condition: str, engine: Engine) -> None:
        self.models.record_determinism(condition, engine)

    # -- stages -------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        """Load every dataset and split training domains into train / held-out questions (in memory only):
        a dataset that is missing, malformed or too small is a config error naming the config file and field."""
        cfg = self.config.data
        self.train_questions, self.eval_sets, self.in_domain = [], {}, {}
        for where, entry in dataset_entries(self.config):
            questions = self._load(where, entry)
            if where.startswith("data.train"):
                if len(questions) < entry.train + entry.held_out:
                    raise ConfigError(
                        f"{self.source}: field '{where}': '{entry.name}' has {len(questions)} questions, fewer "
                        f"than train + held_out = {entry.train + entry.held_out}"
                    )
                pool, held = split_questions(questions, held_out=entry.held_out, seed=cfg.seed)
                self.train_questions += sorted(pool, key=lambda q: _rank(cfg.seed, q.id))[: entry.train]
            else:
                if len(questions) < entry.n:
                    raise ConfigError(
                        f"{self.source}: field '{where}.n': '{entry.name}' has {len(questions)} "
                        f"questions, fewer than n = {entry.n}"
                    )
                held = sorted(questions, key=lambda q: _rank(cfg.seed, q.id))[: entry.n]
            name = questions[0].dataset
            self.eval_sets[name] = held
            self.in_domain[name] = where.startswith("data.train")
        self._loaded = True

    def _load(self, where: str, entry: Any) -> list[Question]:
        """One dataset entry's questions, under the entry's label and domain."""
        from metaconf.data.registry import DATASETS

        try:
            questions = _load(entry)
        except DataError as exc:
            raise ConfigError(f"{self.source}: field '{where}': {exc}") from None
        label = dataset_label(entry, entry.name in DATASETS)
        for q in questions:
            if q.dataset != label:
                q.id = f"{label}/{q.id.split('/', 1)[-1]}"
                q.dataset = label
            if entry.domain:
                q.domain = entry.domain
        return questions

    def stage_data(self) -> str:
        """Record the train / held-out / evaluation question ids of the loaded datasets."""
        if not self._loaded:
            self.load_data()
        write_json(
            self.run_dir / "data" / "splits.json",
            {
                "train": [q.id for q in self.train_questions],
                "eval": {name: [q.id for q in qs] for name, qs in self.eval_sets.items()},
                "in_domain": self.in_domain,
            },
        )
        n_eval = sum(len(qs) for qs in self.eval_sets.values())
        n_sets = len(self.eval_sets)
        return f"{len(self.train_questions)} training questions, {n_eval} evaluation questions in {n_sets} datasets"

    def record_format(self, stage: str, fmt: str) -> None:
        """RUN/format.json: the reply format (guided or free) each sampling stage actually used (a record for
        metrics.json; the study decides from `sampling`, never from this file)."""
        path = self.run_dir / "format.json"
        formats = read_json(path) if path.is_file() else {}
        formats[stage] = fmt
        write_json(path, formats)

    def formats(self) -> dict[str, str | None]:
        """The formats recorded in RUN/format.json (what the stored files used)."""
        path = self.run_dir / "format.json"
        recorded = read_json(path) if path.is_file() else {}
        return {stage: recorded.get(stage) for stage in ("targets", "consistency", "evaluation")}

    @functools.cached_property
    def tasks(self) -> Tasks:
        """The study's reply formats, picked once from its targets settings: every stage asks, guides and parses
        with these."""
        return Tasks.of(self.config.targets)

    @functools.cached_property
    def evaluation_sampling(self) -> Sampling:
        """The evaluation's sampling settings, its format resolved once against the base engine (the baselines
        use the same); the grader is added where answers are graded (it may be a model of its own)."""
        return Sampling.evaluation(self.config.evaluation, self.engine(BASE))

    def stage_targets(self) -> str:
        from metaconf.targets import build_data

        summary = build_data(self.run_dir, self.engine(BASE), self.train_questions, self.config.targets, self.tasks)
        self.record_format("targets", summary["format"])
        overall = summary["consistency"]["all"]
        sets = ", ".join(f"{name} {card.get('n_examples', 0)}" for name, card in summary["sets"].items())
        return (
            f"{overall['n']} questions x {self.config.targets.n_samples} samples: answer parse rate "
            f"{overall['parse_rate']:.2f}, modal accuracy {overall['accuracy']:.2f}, mean consistency "
            f"{overall['mean_consistency']:.2f}; training examples: {sets}"
        )

    def stage_train(self) -> str:
        conditions = self.config.trained_conditions
        if not conditions:
            return "no trained conditions"
        sets = {c: self.config.condition(c).training_set for c in conditions}
        for condition, training_set in sets.items():
            card = self.run_dir / "training_sets" / training_set / "card.json"
            reason = read_json(card).get("empty") if card.is_file() else None
            if reason:
                raise ConfigError(
                    f"conditions: the '{training_set}' training set is empty ({reason}), so '{condition}' cannot be "
                    "trained; add training questions, relax the targets settings, or drop the condition"
                )
        self.models.release()  # training loads its own copy of the model: the base engine is not needed meanwhile
        if self.config.training.backend == "hosted":
            from metaconf.training.hosted import run_hosted_conditions

            run_hosted_conditions(self.run_dir, self.config, conditions)
        else:
            from metaconf.training import train_conditions

            train_conditions(
                self.run_dir,
                self.model_path(),
                self.config.training.lora,
                [self.config.condition(c) for c in conditions],  # records: training set and objective
                configs={c: self.config.lora_for(c) for c in conditions},
                dtype=self.dtype() or self.config.model.dtype,  # resolved once: training keeps its reason
                isolate=self.isolate,  # each condition in a child process of its own
            )
        return f"adapters ready: {', '.join(conditions)}"

    def stage_consistency(self) -> str:
        """Base-model consistency of every evaluation question: the reference ranking for AUC_c. Sampled like the
        training targets' consistency, with the evaluation's own settings (evaluation.consistency_*, seed)."""
        from metaconf.targets import sample_consistency

        path = self.run_dir / "consistency" / "eval.jsonl"
        questions = [q for qs in self.eval_sets.values() for q in qs]
        ev = self.config.evaluation
        engine = self.engine(BASE)
        sampling = Sampling.consistency(ev, engine)
        records = sample_consistency(engine, questions, ev.consistency_samples, sampling, self.tasks.answer)
        self.record_format("consistency", sampling.format)
        write_jsonl(path, [r.to_row() for r in records])
        return f"{len(records)} evaluation questions x {self.config.evaluation.consistency_samples} samples"

    def consistency(self) -> dict[str, float]:
        return {r.id: r.consistency for r in read_consistency(self.run_dir / "consistency" / "eval.jsonl")}

    def pairs(self) -> dict[str, list]:
        ev = self.config.evaluation
        return {name: make_pairs(qs, ev.n_pairs(len(qs)), ev.seed) for name, qs in self.eval_sets.items()}

    def shared_prefill(self):
        """Lower-layer prefill shared by the base model and adapters that only change upper layers (where the base
        engine can share it)."""
        return self.models.shared_prefill(self.engine(BASE))

    def adapter_stamp(self, condition: str) -> str | None:
        """The fingerprint of the adapter a condition answers with (its DONE file), None for the base model or an
        adapter without one."""
        done = self.run_dir / "training" / condition / "DONE"
        return done.read_text().strip() if condition != BASE and done.is_file() else None

    def stage_evaluate(self) -> str:
        consistency, pairs = self.consistency(), self.pairs()
        shared = self.shared_prefill()
        done = 0
        sampling = self.evaluation_sampling
        stale = self.formats()["evaluation"] not in (None, sampling.format)  # stored predictions: the other format
        self.record_format("evaluation", sampling.format)
        stamps_path = self.run_dir / "predictions" / "adapters.json"  # condition -> the adapter it answered with
        stamps = read_json(stamps_path) if stamps_path.is_file() else {}
        for condition in self.config.condition_names:
            stamp = self.adapter_stamp(condition)
            complete = (
                not stale
                and stamps.get(condition, stamp) == stamp  # a retrained adapter's predictions are made again
                and all(
                    prediction_path(self.run_dir, condition, task, name).is_file()
                    for task in ("single", "pairwise")
                    for name in self.eval_sets
                )
            )
            if not complete:
                engine = self.engine(condition)
                if shared is not None:
                    engine.shared_prefill = shared
                evaluate_condition(
                    self.run_dir,
                    engine,
                    condition,
                    self.eval_sets,
                    pairs,
                    consistency,
                    sampling.but(grader=self.grader()),
                    self.tasks,
                )
                stamps[condition] = stamp
                write_json(stamps_path, stamps)
                done += 1
                del engine  # one adapter's model at a time: freed before the next condition's loads
                release_free_memory()
        self.models.end_shared_prefill(shared)
        n_pairs = sum(len(p) for p in pairs.values())
        n_items = sum(len(q) for q in self.eval_sets.values())
        return (
            f"{len(self.config.conditions)} conditions x ({n_items} questions + {n_pairs} pairs); "
            f"{done} evaluated now, {len(self.config.conditions) - done} already stored"
        )

    def baselines(self) -> list[str]:
        """The configured baselines this study can score (recalibration needs the base condition's answers)."""
        return [b for b in self.config.baselines if b != "recalibration" or BASE in self.config.condition_names]

    def stage_baselines(self) -> str:
        from metaconf.baselines import run_baselines

        if not self.baselines():
            return "none configured"
        return run_baselines(
            self.run_dir,
            self.engine(BASE),
            self.train_questions,
            self.eval_sets,
            self.baselines(),
            self.evaluation_sampling.but(grader=self.grader()),
            self.tasks,
        )

    def stage_metrics(self) -> str:
        from metaconf.metrics import summarize, write_metrics

        predictions = {
            key: rows
            for key, rows in load_predictions(self.run_dir).items()
            if key[0] in self.config.condition_names and key[2] in self.eval_sets
        }
        datasets_info = {
            name: {"domain": qs[0].domain, "in_domain": self.in_domain[name]} for name, qs in self.eval_sets.items()
        }
        metrics = summarize(
            predictions,
            datasets_info,
            n_boot=self.config.evaluation.n_boot,
            seed=self.config.evaluation.seed,
            contrasts=tuple(self.config.contrasts()),
        )
        metrics["model"] = self.model_label()
        metrics["format"] = self.formats()
        metrics["config"] = self.config.model_dump(mode="json")
        metrics["objectives"] = {c.name: c.objective for c in self.config.conditions if c.trained}
        # baselines, teacher gap (when configured) and meta-d′ of every condition: metaconf.baselines.summary
        from metaconf.baselines import load_baselines, methods_of
        from metaconf.baselines.summary import baseline_metrics

        wanted = set(methods_of(self.baselines()))
        scored = {k: v for k, v in load_baselines(self.run_dir).items() if k[0] in wanted and k[1] in self.eval_sets}
        metrics.update(
            baseline_metrics(
                predictions,
                scored,
                datasets_info,
                self.config.trained_conditions,
                n_boot=self.config.evaluation.n_boot,
                seed=self.config.evaluation.seed,
            )
        )
        write_metrics(self.run_dir / "metrics.json", metrics)
        return f"{len(metrics['rows'])} metric rows -> {self.run_dir / 'metrics.json'}"

    def stage_report(self) -> str:
        from metaconf.report import write_report

        md, html = write_report(self.run_dir)
        return f"{md} and {html}"

    def run_info(self) -> dict[str, Any]:
        """What this invocation resolved on this machine (rewritten by every run): the model's number format."""
        return self.models.run_info()

    def model_label(self) -> str:
        return self.models.model_label()

    # -- the whole study ------------------------------------------------------------------------------------
    def run(self, stages: tuple[str, ...] = STAGE_NAMES) -> Path:
        """Run the stages under the run folder's lock. A config error found before anything was computed
        removes the run folder this call created, so a fixed config starts clean."""
        self.load_data()
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ConfigError(f"{self.run_dir}: the run folder is a file")
        created = not self.run_dir.exists()
        lock = RunLock(self.run_dir)
        stale = lock.acquire()
        if stale:  # said even with --quiet: the user should know a run ended without releasing the folder
            print(
                f"metaconf: took over the lock of an ended run (pid {stale.get('pid')} on host {stale.get('host')})",
                file=sys.stderr,
                flush=True,
            )
        try:
            return self._run_locked(stages)
        except MetaconfError:
            if created and self.store.count() == 0:  # a stage's child may have stored completions: ask the file
                self.store.close()
                lock.release()
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        finally:
            lock.release()

    def _run_locked(self, stages: tuple[str, ...]) -> Path:
        from metaconf.tasks import template_record

        write_text_atomic(
            self.run_dir / "config.yaml", yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False)
        )
        p_true = ("p_true",) if "p_true" in self.baselines() else ()
        write_json(self.run_dir / "templates.json", template_record(("answer", "single", "pairwise") + p_true))
        write_json(self.run_dir / "run_info.json", self.run_info())
        started = time.perf_counter()
        timings: dict[str, float] = {}
        memory = PeakMeter()
        for stage in select(stages):
            step = f"[{STAGES.index(stage) + 1}/{len(STAGES)}] {stage.name}"
            t0 = time.perf_counter()
            self.say(f"{step} ...")
            summary = self._run_stage(stage, memory)
            timings[stage.name] = round(time.perf_counter() - t0, 1)
            self.say(f"{step}: {summary} ({timings[stage.name]:.0f} s, peak {memory.stages[stage.name]:.0f} MiB)")
            release_free_memory()
        timings["total"] = round(time.perf_counter() - started, 1)
        write_json(self.run_dir / "timings.json", timings)  # this invocation's stage times (a resume is fast)
        write_json(self.run_dir / "memory.json", memory.record())  # and its peak resident memory per stage
        self.say(f"study finished in {timings['total']:.0f} s; report: {self.run_dir / 'report.html'}")
        return self.run_dir

    def _run_stage(self, stage: Stage, memory: PeakMeter) -> str:
        """Run one stage, here or (a stage loading a local model, when isolating) in a child process of its own;
        its peak resident memory goes to `memory`."""
        memory.start(stage.name)
        if self.isolate and stage.own_process and self.local_model():
            args = (type(self), self.config, self.run_dir, self.quiet, self.source, self.dtype(), stage.name)
            summary, _ = call_in_child(_stage_in_child, *args, name=f"metaconf {stage.name}")
        else:
            summary = stage.run(self)
        memory.stop(stage.name)
        return summary


def _stage_in_child(
    kind: type[Study],
    config: StudyConfig,
    run_dir: Path,
    quiet: bool,
    source: str,
    dtype: DtypeChoice | None,
    stage: str,
) -> str:
    """One stage of a study (of class `kind`), in a child process (`Study._run_stage`): the parent holds the run's
    lock and has resolved (and printed) the number format."""
    study = kind(config, run_dir, quiet=quiet, source=source)
    study.models.use_dtype(dtype)
    study.load_data()
    try:
        return BY_NAME[stage].run(study)
    finally:
        if study._store is not None:
            study._store.close()


def _load(entry: Any) -> list[Question]:
    """A config's dataset entry: a data file (with its field mapping), or a registered name (bundled or a full copy)."""
    if entry.path and Path(entry.path).is_file():
        return load_dataset(entry.path, split=entry.split, **entry.fields)
    return load_dataset(entry.name, split=entry.split, path=entry.path, **entry.fields)
