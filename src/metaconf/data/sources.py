"""Readers for the registered benchmarks, in the exact formats of the files under `shared/data/<folder>/`.

Each reader takes the dataset's folder and a split name and returns every question of that split, or raises a
one-line `DataError` naming the file and line. See docs/data.md for where each file comes from.
"""

from __future__ import annotations

import ast
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaconf.data.ids import short_hash
from metaconf.data.schema import LETTERS, AnswerType, Question
from metaconf.errors import DataError
from metaconf.io import iter_jsonl_objects, read_json, read_text_checked
from metaconf.text import text_problem

csv.field_size_limit(1 << 30)  # LegalBench statutes run to tens of kB per cell

# ---------------------------------------------------------------------------------------------------- helpers


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return path


def _read_json(path: Path) -> Any:
    return read_json(_need(path))


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    return iter_jsonl_objects(_need(path))


def _field(row: dict[str, Any], key: str, where: str) -> Any:
    if key not in row or row[key] is None:
        raise DataError(f"{where}: missing field '{key}'")
    return row[key]


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{key}' must be non-empty text")
    problem = text_problem(value)
    if problem:
        raise DataError(f"{where}: field '{key}': {problem}")
    return value


@dataclass(frozen=True)
class _Benchmark:
    """What every question of one benchmark shares: its dataset name (also the id's prefix), domain and type."""

    dataset: str
    domain: str
    answer_type: AnswerType

    def question(
        self, key: Any, text: Any, where: str, answers: list[str], choices: list[str] | None = None, **meta: Any
    ) -> Question:
        """The question `<dataset>/<key>`; its `text` must be non-empty and is stripped; `meta` as given."""
        question = _text(text, "question", where).strip()
        dataset, domain = self.dataset, self.domain
        return Question(f"{dataset}/{key}", dataset, domain, question, choices, answers, self.answer_type, meta)


MMLU_PRO = _Benchmark("mmlu_pro", "general", "mc")
MMLU = _Benchmark("mmlu", "general", "mc")
GSM8K = _Benchmark("gsm8k", "math", "numeric")
TRIVIAQA = _Benchmark("triviaqa", "trivia", "open")
TRUTHFULQA = _Benchmark("truthfulqa", "truthfulness", "mc")
TRUTHFULQA_GEN = _Benchmark("truthfulqa_gen", "truthfulness", "open")
METAMEDQA = _Benchmark("metamedqa", "medical", "mc")
MEDQA = _Benchmark("medqa", "medical", "mc")


# ---------------------------------------------------------------------------------------------------- MMLU-Pro


def _read_json_list(path: Path) -> list[Any]:
    rows = _read_json(path)
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of questions")
    return rows


def load_mmlu_pro(folder: Path, split: str) -> list[Question]:
    """TIGER-Lab JSON dumps: 3-10 options, gold letter in `answer` (checked against `answer_index`)."""
    path = folder / {"test": "mmlu_pro_test_data.json", "validation": "mmlu_pro_val_data.json"}[split]
    rows = _read_json_list(path)
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: item {i}"
        options = _field(row, "options", where)
        if not isinstance(options, list) or not 2 <= len(options) <= 10:
            raise DataError(f"{where}: 'options' must be a list of 2-10 strings")
        answer = _field(row, "answer", where)
        if answer not in LETTERS[: len(options)] or row.get("answer_index") not in (None, LETTERS.index(answer)):
            raise DataError(f"{where}: answer {answer!r} does not match answer_index {row.get('answer_index')!r}")
        key, text = _field(row, "question_id", where), _field(row, "question", where)
        choices = [str(o).strip() for o in options]  # the 2026 upstream revision strips leading spaces from options
        meta = {"category": row.get("category"), "src": row.get("src")}
        out.append(MMLU_PRO.question(key, text, where, [answer], choices, **meta))
    return out


# ---------------------------------------------------------------------------------------------------- MMLU


def load_mmlu(folder: Path, split: str) -> list[Question]:
    """Hendrycks CSVs, one per subject, no header: question, A, B, C, D, answer letter."""
    sub = {"test": "test", "validation": "val", "dev": "dev"}[split]
    files = sorted(_need(folder / sub).glob(f"*_{sub}.csv"))
    if not files:
        raise DataError(f"{folder / sub}: no *_{sub}.csv files")
    out = []
    for path in files:
        subject = path.name[: -len(f"_{sub}.csv")]
        with io.StringIO(read_text_checked(path), newline="") as fh:
            reader = csv.reader(fh)
            for i, row in enumerate(reader):
                where = f"{path}:{reader.line_num}"
                if len(row) != 6 or row[5].strip() not in ("A", "B", "C", "D"):
                    raise DataError(f"{where}: expected 6 columns ending in an answer letter A-D")
                choices, answers = [c.strip() for c in row[1:5]], [row[5].strip()]
                out.append(MMLU.question(f"{sub}/{subject}/{i}", row[0], where, answers, choices, subject=subject))
    return out


# ---------------------------------------------------------------------------------------------------- GSM8K

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def load_gsm8k(folder: Path, split: str) -> list[Question]:
    """OpenAI JSONL: the gold number follows '####' in `answer` (thousands commas removed)."""
    path = folder / f"{split}.jsonl"
    out = []
    for lineno, row in _read_jsonl(path):
        where = f"{path}:{lineno}"
        solution = _text(_field(row, "answer", where), "answer", where)
        if "####" not in solution:
            raise DataError(f"{where}: 'answer' has no '#### <number>' final answer")
        gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
        if not _NUMBER.fullmatch(gold):
            raise DataError(f"{where}: final answer {gold!r} is not a number")
        out.append(GSM8K.question(f"{split}/{lineno - 1}", _field(row, "question", where), where, [gold]))
    return out


# ---------------------------------------------------------------------------------------------------- TriviaQA


def load_triviaqa(folder: Path, split: str) -> list[Question]:
    """Anserini DPR topics: `question<TAB>['alias', ...]`, the list sometimes CSV-quoted; parsed with
    csv + ast.literal_eval (a literal parser, never eval)."""
    path = _need(folder / f"topics.dpr.trivia.{split}.txt")
    out = []
    with io.StringIO(read_text_checked(path), newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for i, row in enumerate(reader):
            where = f"{path}:{reader.line_num}"
            if len(row) != 2:
                raise DataError(f"{where}: expected 2 tab-separated columns (question, answers), got {len(row)}")
            try:
                aliases = ast.literal_eval(row[1])
            except (ValueError, SyntaxError):
                raise DataError(f"{where}: answers column is not a Python list literal") from None
            if not isinstance(aliases, list) or not aliases or not all(isinstance(a, str) for a in aliases):
                raise DataError(f"{where}: answers must be a non-empty list of strings")
            answers = list(dict.fromkeys(a.strip() for a in aliases if a.strip()))
            out.append(TRIVIAQA.question(f"{split}/{i}", row[0], where, answers))
    return out


# ---------------------------------------------------------------------------------------------------- TruthfulQA

_TQA_FILES = {"test": ".", "test_817": "original_817_fdd8ad1"}


def _tqa_key(split: str, question: str) -> str:
    prefix = "" if split == "test" else "817/"
    return f"{prefix}{short_hash('truthfulqa', question)}"


def shuffle_choices(question: str, choices: list[str]) -> list[str]:
    """A fixed per-question order: sorted by a hash of (question, choice), so the correct answer (listed first
    upstream) lands on a letter that depends only on the text."""
    return sorted(choices, key=lambda c: short_hash("truthfulqa-mc1", question, c, n=16))


def load_truthfulqa(folder: Path, split: str) -> list[Question]:
    """mc1 targets of `mc_task.json` (exactly one correct option), choices shuffled by `shuffle_choices`."""
    path = folder / _TQA_FILES[split] / "mc_task.json"
    rows = _read_json_list(path)
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: item {i}"
        question = _text(_field(row, "question", where), "question", where).strip()
        targets = _field(row, "mc1_targets", where)
        if not isinstance(targets, dict) or sum(1 for v in targets.values() if v == 1) != 1:
            raise DataError(f"{where}: 'mc1_targets' must map options to 0/1 with exactly one 1")
        correct = next(k for k, v in targets.items() if v == 1)
        choices = shuffle_choices(question, [str(k).strip() for k in targets])
        answers = [LETTERS[choices.index(correct.strip())]]
        out.append(TRUTHFULQA.question(_tqa_key(split, question), question, where, answers, choices))
    return out


def load_truthfulqa_gen(folder: Path, split: str) -> list[Question]:
    """Open-ended TruthfulQA.csv: gold = Best Answer + every 'Correct Answers' alias (';'-separated)."""
    path = _need(folder / _TQA_FILES[split] / "TruthfulQA.csv")
    out = []
    with io.StringIO(read_text_checked(path), newline="") as fh:  # the 817-row file starts with a BOM
        reader = csv.DictReader(fh)
        for row in reader:
            where = f"{path}:{reader.line_num}"
            question = _text(row.get("Question"), "Question", where).strip()
            best = _text(row.get("Best Answer"), "Best Answer", where).strip()
            correct = [s.strip() for s in (row.get("Correct Answers") or "").split(";") if s.strip()]
            incorrect = [s.strip() for s in (row.get("Incorrect Answers") or "").split(";") if s.strip()]
            meta = {"category": row.get("Category"), "type": row.get("Type"), "incorrect_answers": incorrect}
            answers = list(dict.fromkeys([best, *correct]))
            out.append(TRUTHFULQA_GEN.question(_tqa_key(split, question), question, where, answers, **meta))
    return out


# ---------------------------------------------------------------------------------------------------- MetaMedQA


def load_metamedqa(folder: Path, split: str) -> list[Question]:
    """Six options (A-D, 'None of the above', "I don't know or cannot answer"); gold = `target` index."""
    path = folder / "metamedqa_metacognition.json"
    rows = _read_json_list(path)
    out = []
    for i, row in enumerate(rows):
        where = f"{path}: item {i}"
        options = _field(row, "options", where)
        target = _field(row, "target", where)
        if not isinstance(options, list) or len(options) != 6:
            raise DataError(f"{where}: 'options' must be a list of 6 strings")
        if not isinstance(target, int) or not 0 <= target < 6:
            raise DataError(f"{where}: 'target' must be an option index 0-5, got {target!r}")
        key, text, choices = _field(row, "id", where), _field(row, "question", where), [str(o).strip() for o in options]
        out.append(METAMEDQA.question(key, text, where, [LETTERS[target]], choices, kind=row.get("kind")))
    return out


# ---------------------------------------------------------------------------------------------------- MedQA


def load_medqa(folder: Path, split: str) -> list[Question]:
    """MedQA-USMLE 4-option JSONL: `options` {A..D: text}, gold letter `answer_idx`."""
    path = folder / f"{split}.jsonl"
    out = []
    for lineno, row in _read_jsonl(path):
        where = f"{path}:{lineno}"
        options = _field(row, "options", where)
        if not isinstance(options, dict) or sorted(options) != list(LETTERS[: len(options)]) or len(options) < 2:
            raise DataError(f"{where}: 'options' must map consecutive letters A, B, ... to text")
        gold = _field(row, "answer_idx", where)
        if gold not in options:
            raise DataError(f"{where}: answer_idx {gold!r} is not one of the options")
        source_id = row.get("realidx", lineno - 1)
        text, choices = _field(row, "question", where), [str(options[k]).strip() for k in sorted(options)]
        out.append(MEDQA.question(source_id, text, where, [gold], choices, exam=row.get("meta_info")))
    return out
