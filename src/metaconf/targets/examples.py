"""SFT examples for the two tasks and the training sets (conditions) built from them.

Only questions with a modal answer are eligible (there is nothing to train the answer on otherwise).
Pairs: two different questions whose calibrated (noise-free) targets differ by at least `gap`; the label is the
question with the higher target, so target noise never flips a label. Positions are balanced: the higher
question comes first in every other pair of the (shuffled) selection. Every random choice is seeded.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaconf.data.schema import Question
from metaconf.engines.base import stable_hash
from metaconf.errors import DataError
from metaconf.targets.calibration import CalibrationMap
from metaconf.targets.config import TargetsConfig, TrainingSetSpec
from metaconf.targets.consistency import ConsistencyRecord, better_question, sampled_accuracy
from metaconf.tasks.task import PairwiseTask, SingleTask, Task, Tasks, get_task
from metaconf.tasks.templates import TEMPLATE_DIR

MAX_CANDIDATE_PAIRS = 200_000
MAX_OPEN_ANSWER_WORDS = 8
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<![A-Z]\.)(?<![A-Z][a-z]\.)(?<!Mrs\.)\s+")  # not after "J." / "Dr."


@dataclass
class Example:
    """One SFT example: chat messages (prompt + assistant target) and what it was built from."""

    task: str  # "single" | "pairwise"
    messages: list[dict[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(int(stable_hash(str(seed), *parts)[:15], 16))


def short_answer(text: str, max_words: int = MAX_OPEN_ANSWER_WORDS) -> str:
    """An open answer as a target: its first sentence, at most `max_words` words, without trailing punctuation.

    Samples stop at the answer template's token limit, often mid-sentence, and a small model answers "a short
    answer" with a whole sentence; a target that long teaches replies that run out of tokens before the
    confidence line. The consistency and grading behind the target used the full answer.
    """
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    short = " ".join(first.split()[:max_words]).strip(" .,;:")
    return short or text.strip()


def display_answer(record: ConsistencyRecord) -> str:
    """The answer as written in a target: the model's own wording (shortened) for open answers, else the
    normalized one."""
    if record.answer_type == "open" and record.modal_text:
        return short_answer(record.modal_text)
    return str(record.modal_answer)


def eligible(records: Sequence[ConsistencyRecord], domains: Sequence[str] | None = None) -> list[ConsistencyRecord]:
    """Records with a modal answer, in the given domains (all when None), sorted by id for determinism."""
    keep = [r for r in records if r.modal_answer is not None and (domains is None or r.domain in domains)]
    return sorted(keep, key=lambda r: r.id)


def subsample_bins(
    records: Sequence[ConsistencyRecord], cmap: CalibrationMap, max_per_bin: int | None, seed: int
) -> list[ConsistencyRecord]:
    """At most `max_per_bin` records per consistency bin (seeded choice), so targets are spread."""
    if max_per_bin is None:
        return list(records)
    bins: dict[int, list[ConsistencyRecord]] = {}
    for r in records:
        bins.setdefault(cmap.bin_of(r), []).append(r)
    keep: set[str] = set()
    for k, group in bins.items():
        chosen = group if len(group) <= max_per_bin else _rng(seed, "subsample", str(k)).sample(group, max_per_bin)
        keep.update(r.id for r in chosen)
    return [r for r in records if r.id in keep]


def _question(questions: dict[str, Question], qid: str) -> Question:
    if qid not in questions:
        raise DataError(f"consistency record {qid}: no such training question")
    return questions[qid]


def single_examples(
    records: Sequence[ConsistencyRecord],
    questions: dict[str, Question],
    cmap: CalibrationMap,
    noise: float = 0.05,
    seed: int = 0,
    task: SingleTask | None = None,
) -> list[Example]:
    """Question prompt -> modal answer + calibrated target confidence, one per record, in `task`'s format
    (default: the bundled single template)."""
    task = task or get_task("single")
    out = []
    for r in records:
        q = _question(questions, r.id)
        target = cmap.target(r, noise=noise, seed=seed)
        answer = display_answer(r)
        reply = task.format_target(answer, target, q)
        out.append(
            Example(
                "single",
                task.messages(q) + [{"role": "assistant", "content": reply}],
                {
                    "id": r.id,
                    "dataset": r.dataset,
                    "domain": r.domain,
                    "bin": cmap.bin_of(r),
                    "consistency": r.consistency,
                    "target": round(target, 2),
                    "modal_correct": r.modal_correct,
                    # labels of the brier objective (training/brier.py): the answer's sampled accuracy, and where
                    # the confidence starts in the reply
                    "sampled_accuracy": round(sampled_accuracy(r, q), 4),
                    "score_at": task.value_at("confidence", answer=answer),
                },
            )
        )
    return out


def select_pairs(
    records: Sequence[ConsistencyRecord],
    cmap: CalibrationMap,
    n_pairs: int,
    gap: float = 0.1,
    cross_domain_share: float = 0.5,
    seed: int = 0,
) -> list[tuple[ConsistencyRecord, ConsistencyRecord]]:
    """Up to `n_pairs` distinct unordered pairs (never a question with itself) with targets >= gap apart,
    about `cross_domain_share` of them across domains. Returned as (higher target, lower target)."""
    rng = _rng(seed, "pairs")
    items = list(records)
    total = len(items) * (len(items) - 1) // 2
    if total <= MAX_CANDIDATE_PAIRS:
        index_pairs: Sequence[tuple[int, int]] = list(itertools.combinations(range(len(items)), 2))
    else:  # too many to list: a seeded random sample of distinct pairs
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < MAX_CANDIDATE_PAIRS:
            i, j = rng.sample(range(len(items)), 2)
            chosen.add((min(i, j), max(i, j)))
        index_pairs = sorted(chosen)
    score = [cmap.accuracy(r) for r in items]
    within, across = [], []
    for i, j in index_pairs:
        if items[i].id != items[j].id and abs(score[i] - score[j]) >= gap - 1e-12 and score[i] != score[j]:
            (across if items[i].domain != items[j].domain else within).append((i, j))
    rng.shuffle(within)
    rng.shuffle(across)
    n_across = min(round(n_pairs * cross_domain_share), len(across))
    n_within = min(n_pairs - n_across, len(within))
    n_across = min(n_pairs - n_within, len(across))  # top up from the other kind
    picked = across[:n_across] + within[:n_within]
    rng.shuffle(picked)
    return [(items[i], items[j]) if score[i] > score[j] else (items[j], items[i]) for i, j in picked]


def pairwise_examples(
    pairs: Sequence[tuple[ConsistencyRecord, ConsistencyRecord]],
    questions: dict[str, Question],
    cmap: CalibrationMap,
    task: PairwiseTask | None = None,
) -> list[Example]:
    """Pairs (higher, lower) -> prompts with the higher question first in even positions, second in odd ones,
    in `task`'s format (default: the bundled pairwise template)."""
    task = task or get_task("pairwise")
    out = []
    for k, (high, low) in enumerate(pairs):
        first, second = (high, low) if k % 2 == 0 else (low, high)
        choice = 1 if k % 2 == 0 else 2
        q1, q2 = _question(questions, first.id), _question(questions, second.id)
        answer1, answer2 = display_answer(first), display_answer(second)
        reply = task.format_target(choice, answer1, answer2, q1, q2)
        accuracy1, accuracy2 = sampled_accuracy(first, q1), sampled_accuracy(second, q2)
        out.append(
            Example(
                "pairwise",
                task.messages(q1, q2) + [{"role": "assistant", "content": reply}],
                {
                    "id1": first.id,
                    "id2": second.id,
                    "domain1": first.domain,
                    "domain2": second.domain,
                    "dataset1": first.dataset,
                    "dataset2": second.dataset,
                    "choice": choice,
                    "target1": round(cmap.accuracy(first), 4),
                    "target2": round(cmap.accuracy(second), 4),
                    "bin1": cmap.bin_of(first),
                    "bin2": cmap.bin_of(second),
                    # labels of the brier objective: the question answered correctly more often in the samples
                    # (null on a tie: left out of its loss), and where the choice starts in the reply
                    "sampled_accuracy1": round(accuracy1, 4),
                    "sampled_accuracy2": round(accuracy2, 4),
                    "better": better_question(accuracy1, accuracy2),
                    "score_at": task.value_at("choice", answer1=answer1, answer2=answer2),
                },
            )
        )
    return out


class ShuffledTargets:
    """A calibration map whose targets are permuted across `records` (seeded): question r gets the target, the
    calibrated accuracy and the bin of its partner record, while its answer stays its own. The shuffled-target
    control's map (TrainingSetSpec.shuffle_targets)."""

    def __init__(self, cmap: CalibrationMap, records: Sequence[ConsistencyRecord], rng: random.Random):
        partners = list(records)
        rng.shuffle(partners)
        self.cmap = cmap
        self.partner = {r.id: p for r, p in zip(records, partners)}

    def _of(self, record: ConsistencyRecord) -> ConsistencyRecord:
        return self.partner.get(record.id, record)

    def bin_of(self, record: ConsistencyRecord) -> int:
        return self.cmap.bin_of(self._of(record))

    def accuracy(self, record: ConsistencyRecord) -> float:
        return self.cmap.accuracy(self._of(record))

    def target(self, record: ConsistencyRecord, noise: float = 0.05, seed: int = 0) -> float:
        return self.cmap.target(self._of(record), noise=noise, seed=seed)


def build_training_set(
    spec: TrainingSetSpec,
    records: Sequence[ConsistencyRecord],
    questions: dict[str, Question],
    cmap: CalibrationMap,
    config: TargetsConfig,
    tasks: Tasks | None = None,
) -> list[Example]:
    """The examples of one condition: single, pairwise, or a seeded multitask mix of both, in the formats of
    `tasks` (default: the templates `config` names)."""
    tasks = tasks or Tasks.of(config)
    pool = subsample_bins(eligible(records, spec.domains), cmap, config.subsample_max_per_bin, config.seed)
    seed = config.seed
    if spec.shuffle_targets:  # the control: every question keeps its answer and takes another's target
        cmap = ShuffledTargets(cmap, sorted(pool, key=lambda r: r.id), _rng(seed, spec.name, "shuffle"))  # type: ignore[assignment]

    def singles(n: int | None) -> list[Example]:
        chosen = pool if n is None or n >= len(pool) else _rng(seed, spec.name, "single").sample(pool, n)
        return single_examples(sorted(chosen, key=lambda r: r.id), questions, cmap, config.noise, seed, tasks.single)

    def pairs(n: int) -> list[Example]:
        picked = select_pairs(pool, cmap, n, config.pair_gap, config.cross_domain_share, seed)
        return pairwise_examples(picked, questions, cmap, tasks.pairwise)

    if spec.task == "single":
        return with_prompt_inputs(singles(spec.size), questions, tasks)
    if spec.task == "pairwise":
        return with_prompt_inputs(pairs(spec.size or len(pool)), questions, tasks)
    size = spec.size or len(pool)
    n_single = round(size * spec.single_share)
    mixed = singles(n_single) + pairs(size - n_single)
    _rng(seed, spec.name, "mix").shuffle(mixed)
    return with_prompt_inputs(mixed, questions, tasks)


def template_ref(task: Task) -> str:
    """How examples.jsonl names a task's template: the bundled template's name, else the file it was read from."""
    path = task.template.path
    return task.name if not path or Path(path).parent == TEMPLATE_DIR else path


def with_prompt_inputs(examples: list[Example], questions: dict[str, Question], tasks: Tasks) -> list[Example]:
    """The examples with what re-asking their prompt needs in their meta (the grpo objective samples replies to
    each prompt and grades them): the question(s) with their gold answers, and the template they are written in."""
    for e in examples:
        if e.task == "single":
            e.meta["question"] = questions[e.meta["id"]].to_dict()
        else:
            e.meta["question1"] = questions[e.meta["id1"]].to_dict()
            e.meta["question2"] = questions[e.meta["id2"]].to_dict()
        e.meta["template"] = template_ref(tasks.single if e.task == "single" else tasks.pairwise)
    return examples
