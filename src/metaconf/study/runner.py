"""The study orchestrator behind `metaconf run` and `metaconf demo`.

Stages run in order, each reading what the previous ones stored in the run folder and printing one summary line:
data -> targets -> train -> consistency -> evaluate -> metrics -> report. Every completion lives in
`RUN/completions.sqlite` and every trained adapter is marked DONE, so a rerun (after a crash, Ctrl-C or a
finished run) recomputes nothing that is stored.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from metaconf.data import Question, load_dataset, split_questions
from metaconf.engines import CompletionStore, Engine, get_engine
from metaconf.errors import ConfigError
from metaconf.evaluation import evaluate_condition, load_predictions, make_pairs, prediction_path
from metaconf.io import read_json, read_jsonl, write_json, write_jsonl, write_text_atomic
from metaconf.study.config import BASE, StudyConfig

STAGES = ("data", "targets", "train", "consistency", "evaluate", "metrics", "report")


def _rank(seed: int, qid: str) -> str:
    return hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()


class Study:
    """One study in one run folder."""

    def __init__(self, config: StudyConfig, run_dir: str | Path, quiet: bool = False):
        self.config = config
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = CompletionStore(self.run_dir / "completions.sqlite")
        self.train_questions: list[Question] = []
        self.eval_sets: dict[str, list[Question]] = {}  # dataset -> held-out / new-domain questions
        self.in_domain: dict[str, bool] = {}
        self._base_engine: Engine | None = None

    # -- helpers ------------------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def model_path(self) -> str:
        """Where the local model's weights are (what LoRA trains on)."""
        if self.config.model.engine == "embedded":
            from metaconf.engines.embedded import embedded_model_dir

            return str(embedded_model_dir())
        return str(self.config.model.local_path or self.config.model.name)

    def engine(self, condition: str = BASE) -> Engine:
        """The engine answering for a condition: the base model, or the base model + that condition's adapter."""
        if condition == BASE and self._base_engine is not None:
            return self._base_engine
        m = self.config.model
        kwargs: dict[str, Any] = dict(m.options)
        adapter = None if condition == BASE else self.run_dir / "training" / condition / "adapter"
        if m.engine == "openai":
            model = m.name
            if condition != BASE and self.config.training.backend == "lora":  # served next to the base model
                model = m.served_adapters.get(condition, condition)
            elif condition != BASE:
                job = read_json(self.run_dir / "training" / condition / "hosted_job.json")
                model = job["fine_tuned_model"]
            engine = get_engine("openai", store=self.store, base_url=m.base_url, model=model,
                                api_key_env=m.api_key_env, quiet=self.quiet, **kwargs)
        elif m.engine == "embedded":
            engine = get_engine("embedded", store=self.store, adapter=adapter, quiet=self.quiet, **kwargs)
        else:
            if m.engine == "vllm" and self.config.trained_conditions and self.config.training.backend == "lora":
                # the largest rank up front: the base model and every adapter then share one vllm.LLM
                ranks = [self.config.training.lora_for(c).rank for c in self.config.trained_conditions]
                kwargs.setdefault("max_lora_rank", max(ranks))
            engine = get_engine(m.engine, store=self.store, model=m.name, adapter=adapter, quiet=self.quiet,
                                **kwargs)
        if condition == BASE:
            self._base_engine = engine
        self._record_determinism(condition, engine)
        return engine

    def _record_determinism(self, condition: str, engine: Engine) -> None:
        """RUN/determinism.json: per condition, whether its samples repeat on a rerun (backends differ)."""
        path = self.run_dir / "determinism.json"
        record = read_json(path) if path.is_file() else {}
        if record.get(condition) != engine.determinism:
            record[condition] = engine.determinism
            write_json(path, record)

    # -- stages -------------------------------------------------------------------------------------------
    def stage_data(self) -> str:
        """Load every dataset, split training domains into train / held-out questions, record the ids."""
        cfg = self.config.data
        self.train_questions, self.eval_sets, self.in_domain = [], {}, {}
        for entry in cfg.train:
            questions = _load(entry)
            if len(questions) < entry.train + entry.held_out:
                raise ConfigError(
                    f"data.train '{entry.name}': has {len(questions)} questions, fewer than train + held_out = "
                    f"{entry.train + entry.held_out}"
                )
            pool, held = split_questions(questions, held_out=entry.held_out, seed=cfg.seed)
            train = sorted(pool, key=lambda q: _rank(cfg.seed, q.id))[: entry.train]
            self.train_questions += train
            name = questions[0].dataset
            self.eval_sets[name] = held
            self.in_domain[name] = True
        for entry in cfg.eval:
            questions = _load(entry)
            if len(questions) < entry.n:
                raise ConfigError(f"data.eval '{entry.name}': has {len(questions)} questions, fewer than n = {entry.n}")
            chosen = sorted(questions, key=lambda q: _rank(cfg.seed, q.id))[: entry.n]
            self.eval_sets[chosen[0].dataset] = chosen
            self.in_domain[chosen[0].dataset] = False
        write_json(self.run_dir / "data" / "splits.json", {
            "train": [q.id for q in self.train_questions],
            "eval": {name: [q.id for q in qs] for name, qs in self.eval_sets.items()},
            "in_domain": self.in_domain,
        })
        n_eval = sum(len(qs) for qs in self.eval_sets.values())
        return f"{len(self.train_questions)} training questions, {n_eval} evaluation questions in {len(self.eval_sets)} datasets"

    def stage_targets(self) -> str:
        from metaconf.targets import build_data

        summary = build_data(self.run_dir, self.engine(BASE), self.train_questions, self.config.targets)
        overall = summary["consistency"]["all"]
        sets = ", ".join(f"{name} {card.get('n_examples', 0)}" for name, card in summary["sets"].items())
        return (f"{overall['n']} questions x {self.config.targets.n_samples} samples: answer parse rate "
                f"{overall['parse_rate']:.2f}, modal accuracy {overall['accuracy']:.2f}, mean consistency "
                f"{overall['mean_consistency']:.2f}; training examples: {sets}")

    def stage_train(self) -> str:
        conditions = self.config.trained_conditions
        if not conditions:
            return "no trained conditions"
        for condition in conditions:
            card = self.run_dir / "training_sets" / condition / "card.json"
            reason = read_json(card).get("empty") if card.is_file() else None
            if reason:
                raise ConfigError(
                    f"conditions: the '{condition}' training set is empty ({reason}); add training questions, "
                    f"relax the targets settings, or drop the condition"
                )
        if self.config.training.backend == "hosted":
            from metaconf.training.hosted import run_hosted_conditions

            run_hosted_conditions(self.run_dir, self.config, conditions)
        else:
            from metaconf.training import train_conditions

            training = self.config.training
            train_conditions(self.run_dir, self.model_path(), training.lora, conditions,
                             configs={c: training.lora_for(c) for c in conditions})
        return f"adapters ready: {', '.join(conditions)}"

    def stage_consistency(self) -> str:
        """Base-model consistency of every evaluation question: the reference ranking for AUC_c."""
        from metaconf.targets import sample_consistency

        path = self.run_dir / "consistency" / "eval.jsonl"
        questions = [q for qs in self.eval_sets.values() for q in qs]
        t = self.config.targets
        records = sample_consistency(
            self.engine(BASE), questions, n=self.config.evaluation.consistency_samples,
            temperature=t.temperature, seed=t.seed,
        )
        write_jsonl(path, [r.to_dict() for r in records])
        return f"{len(records)} evaluation questions x {self.config.evaluation.consistency_samples} samples"

    def consistency(self) -> dict[str, float]:
        return {r["id"]: r["consistency"] for r in read_jsonl(self.run_dir / "consistency" / "eval.jsonl")}

    def pairs(self) -> dict[str, list]:
        ev = self.config.evaluation
        return {name: make_pairs(qs, ev.pairs_per_dataset, ev.seed) for name, qs in self.eval_sets.items()}

    def shared_prefill(self):
        """Lower-layer prefill shared by the base model and adapters that only change upper layers (local models)."""
        if self.config.model.engine not in ("embedded", "hf"):
            return None
        from metaconf.engines.hf import SharedPrefill, lowest_adapter_layer

        lowest = [lowest_adapter_layer(self.run_dir / "training" / c / "adapter")
                  for c in self.config.trained_conditions]
        split = min(lowest, default=0)
        return SharedPrefill(split) if split > 0 else None

    def stage_evaluate(self) -> str:
        ev = self.config.evaluation
        consistency, pairs = self.consistency(), self.pairs()
        shared = self.shared_prefill()
        done = 0
        for condition in self.config.conditions:
            complete = all(
                prediction_path(self.run_dir, condition, task, name).is_file()
                for task in ("single", "pairwise") for name in self.eval_sets
            )
            if not complete:
                engine = self.engine(condition)
                if shared is not None:
                    engine.shared_prefill = shared
                evaluate_condition(self.run_dir, engine, condition, self.eval_sets, pairs, consistency,
                                   temperature=ev.temperature, logprobs=ev.logprobs, seed=ev.seed)
                done += 1
        if shared is not None:
            shared.clear()
            if self._base_engine is not None:
                self._base_engine.shared_prefill = None
        n_pairs = sum(len(p) for p in pairs.values())
        n_items = sum(len(q) for q in self.eval_sets.values())
        return (f"{len(self.config.conditions)} conditions x ({n_items} questions + {n_pairs} pairs); "
                f"{done} evaluated now, {len(self.config.conditions) - done} already stored")

    def stage_metrics(self) -> str:
        from metaconf.metrics import summarize

        predictions = {
            key: rows for key, rows in load_predictions(self.run_dir).items()
            if key[0] in self.config.conditions and key[2] in self.eval_sets
        }
        datasets_info = {name: {"domain": qs[0].domain, "in_domain": self.in_domain[name]}
                         for name, qs in self.eval_sets.items()}
        metrics = summarize(predictions, datasets_info, n_boot=self.config.evaluation.n_boot,
                            seed=self.config.evaluation.seed)
        metrics["model"] = self.model_label()
        metrics["config"] = self.config.model_dump(mode="json")
        write_json(self.run_dir / "metrics.json", metrics)
        return f"{len(metrics['rows'])} metric rows -> {self.run_dir / 'metrics.json'}"

    def stage_report(self) -> str:
        from metaconf.report import write_report

        md, html = write_report(self.run_dir)
        return f"{md} and {html}"

    def model_label(self) -> str:
        m = self.config.model
        return "SmolLM2-135M-Instruct (embedded)" if m.engine == "embedded" else f"{m.name} ({m.engine})"

    # -- the whole study ------------------------------------------------------------------------------------
    def run(self, stages: tuple[str, ...] = STAGES) -> Path:
        from metaconf.tasks import template_record

        write_text_atomic(self.run_dir / "config.yaml",
                          yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False))
        write_json(self.run_dir / "templates.json", template_record())
        steps: dict[str, Callable[[], str]] = {
            "data": self.stage_data, "targets": self.stage_targets, "train": self.stage_train,
            "consistency": self.stage_consistency, "evaluate": self.stage_evaluate,
            "metrics": self.stage_metrics, "report": self.stage_report,
        }
        wanted = set(stages) | {"data"}  # every stage needs the questions
        started = time.perf_counter()
        timings: dict[str, float] = {}
        for i, name in enumerate(STAGES, 1):
            if name not in wanted:
                continue
            t0 = time.perf_counter()
            self.say(f"[{i}/{len(STAGES)}] {name} ...")
            summary = steps[name]()
            timings[name] = round(time.perf_counter() - t0, 1)
            self.say(f"[{i}/{len(STAGES)}] {name}: {summary} ({timings[name]:.0f} s)")
        timings["total"] = round(time.perf_counter() - started, 1)
        write_json(self.run_dir / "timings.json", timings)  # this invocation's stage times (a resume is fast)
        self.say(f"study finished in {timings['total']:.0f} s; report: {self.run_dir / 'report.html'}")
        return self.run_dir


def _load(entry: Any) -> list[Question]:
    """A config's dataset entry: a data file (with its field mapping), or a registered name (bundled or a full copy)."""
    if entry.path and Path(entry.path).is_file():
        return load_dataset(entry.path, split=entry.split, **entry.fields)
    return load_dataset(entry.name, split=entry.split, path=entry.path, **entry.fields)
