"""The registered benchmarks: where their files live, how to read them, sizes, sources, licences, citations.

Split sizes are the number of questions the loader produces from the full files (checked by
tests/test_data_registry.py against shared/data); `bundled` is the size of the sample shipped in the package.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from metaconf.data import legalbench, sources
from metaconf.data.schema import Question

BUNDLE_RULE = (
    "bundled sample: {n} questions of the '{split}' split drawn with seed 0 from those whose question +"
    " options text is at most the split's median length{extra}"
)


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset: what it is, its splits (question counts of the full files) and provenance."""

    name: str
    domain: str
    answer_type: str
    description: str
    splits: dict[str, int]
    bundled: int
    source: str
    licence: str
    citation: str
    folder: str = field(default="", repr=False)  # sub-folder of the data dir holding the full files
    default_split: str = "test"
    loader: Callable[[Path, str], list[Question]] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (no loader), its keys in `SUMMARY_FIELDS` order."""
        return {key: copy.copy(getattr(self, key)) for key in SUMMARY_FIELDS}


# what `metaconf datasets --json` shows of each dataset, in this order
SUMMARY_FIELDS = (
    "name",
    "domain",
    "answer_type",
    "description",
    "splits",
    "default_split",
    "bundled",
    "source",
    "licence",
    "citation",
    "folder",
)


def _bundle(n: int = 300, split: str = "test", extra: str = "") -> str:
    return BUNDLE_RULE.format(n=n, split=split, extra=extra)


_TQA_SRC = (
    "github.com/koppula/TruthfulQA (fork carrying sylinrl/TruthfulQA), HEAD 4dee231 (Jan 2025 revision, "
    "790 questions); split test_817: original files from sylinrl commit fdd8ad1"
)
_TQA_CITE = "Lin, Hilton & Evans (2022). TruthfulQA: Measuring How Models Mimic Human Falsehoods. ACL."


def _truthfulqa(
    name: str, answer_type: str, description: str, loader: Callable[[Path, str], list[Question]]
) -> DatasetInfo:
    """The two readings of TruthfulQA share their files, splits, sample size, source, licence and citation."""
    splits = {"test": 790, "test_817": 817}
    return DatasetInfo(
        name, "truthfulness", answer_type, description + _bundle(), splits, 300, _TQA_SRC, "Apache-2.0", _TQA_CITE,
        "truthfulqa", loader=loader,
    )  # fmt: skip


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "mmlu_pro",
            "general",
            "mc",
            "MMLU-Pro: 14-category professional-level multiple choice with up to 10 options (A-J). " + _bundle(),
            {"test": 12032, "validation": 70},
            300,
            "github.com/TIGER-AI-Lab/MMLU-Pro local_data dumps of TIGER-Lab/MMLU-Pro, commit 6a02be7",
            "MIT (HF card); Apache-2.0 (GitHub repo)",
            "Wang et al. (2024). MMLU-Pro: A More Robust and Challenging Multi-Task Language Understanding Benchmark. "
            "NeurIPS Datasets and Benchmarks.",
            "mmlu_pro",
            loader=sources.load_mmlu_pro,
        ),
        DatasetInfo(
            "mmlu",
            "general",
            "mc",
            "MMLU: 57-subject 4-option multiple choice (Hendrycks CSVs). " + _bundle(),
            {"test": 14042, "validation": 1531, "dev": 285},
            300,
            "github.com/stanford-cs336/assignment5-alignment data/mmlu, commit eb2c562 (original Hendrycks CSVs)",
            "MIT (upstream hendrycks/test)",
            "Hendrycks et al. (2021). Measuring Massive Multitask Language Understanding. ICLR.",
            "mmlu",
            loader=sources.load_mmlu,
        ),
        DatasetInfo(
            "gsm8k",
            "math",
            "numeric",
            "GSM8K: grade-school math word problems, numeric answer after '####'. " + _bundle(),
            {"test": 1319, "train": 7473},
            300,
            "github.com/openai/grade-school-math, commit 3101c7d",
            "MIT",
            "Cobbe et al. (2021). Training Verifiers to Solve Math Word Problems. arXiv:2110.14168.",
            "gsm8k",
            loader=sources.load_gsm8k,
        ),
        DatasetInfo(
            "triviaqa",
            "trivia",
            "open",
            "TriviaQA open-domain (DPR splits: test = unfiltered dev), answers are alias lists. " + _bundle(),
            {"test": 11313, "dev": 8837},
            300,
            "github.com/castorini/anserini-tools topics.dpr.trivia.*, commit 5b819c1",
            "none stated by the source",
            "Joshi et al. (2017). TriviaQA: A Large Scale Distantly Supervised Challenge Dataset for Reading "
            "Comprehension. ACL.",
            "triviaqa",
            loader=sources.load_triviaqa,
        ),
        _truthfulqa(
            "truthfulqa",
            "mc",
            "TruthfulQA MC1 (one correct option; options shuffled by a fixed per-question hash). ",
            sources.load_truthfulqa,
        ),
        _truthfulqa(
            "truthfulqa_gen",
            "open",
            "TruthfulQA open-ended: gold = Best Answer + Correct Answers aliases; incorrect answers in meta. ",
            sources.load_truthfulqa_gen,
        ),
        DatasetInfo(
            "metamedqa",
            "medical",
            "mc",
            "MetaMedQA: MedQA-based 6-option questions incl. 'None of the above' and \"I don't know or cannot "
            'answer"; meta.kind marks fictional / malformed / modified items. ' + _bundle(),
            {"test": 1373},
            300,
            "github.com/SanddhyaJ/Agent_Edge_Benchmarking benchmarks/metacognition (reformatted maximegmd/MetaMedQA), "
            "commit d75cb42",
            "CC-BY-4.0",
            "Griot et al. (2025). Large Language Models lack essential metacognition for reliable medical reasoning. "
            "Nature Communications. doi:10.1038/s41467-024-55628-6",
            "metamedqa",
            loader=sources.load_metamedqa,
        ),
        DatasetInfo(
            "medqa",
            "medical",
            "mc",
            "MedQA-USMLE (US, English) 4-option test questions. " + _bundle(),
            {"test": 1273},
            300,
            "github.com/xk-huang/medagents-benchmark data/medqa/test.jsonl, commit 56ca11e",
            "MIT",
            "Jin et al. (2021). What Disease does this Patient Have? A Large-scale Open Domain Question Answering "
            "Dataset from Medical Exams. Applied Sciences.",
            "medqa",
            loader=sources.load_medqa,
        ),
        DatasetInfo(
            "legalbench",
            "legal",
            "boolean",
            "LegalBench pre-release test files, 52 tasks (38 CUAD, diversity_1-6, hearsay, proa, ...): Yes/No tasks "
            "as boolean, label tasks as mc, tax amounts as numeric; rule_qa and eurlex left out. meta.task names the "
            "task. " + _bundle(extra=", spread evenly over the tasks"),
            {"test": 23385},
            300,
            "github.com/HazyResearch/legalbench test.tsv files at commit 49bf0a8 (2023-03-10)",
            "per task (see each LegalBench task README); the repository states none",
            "Guha et al. (2023). LegalBench: A Collaboratively Built Benchmark for Measuring Legal Reasoning in Large "
            "Language Models. NeurIPS Datasets and Benchmarks.",
            "legalbench",
            loader=legalbench.load_legalbench,
        ),
    ]
}


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, in registry order."""
    return list(DATASETS.values())
