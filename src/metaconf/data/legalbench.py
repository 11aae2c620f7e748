"""LegalBench pre-release test files (`test_tsv_2023-03-10_49bf0a8/<task>/test.tsv`) as Questions.

The TSVs hold only the case text and a label, so each task gets the one-line question LegalBench asks about it.
Yes/No tasks load as `boolean` (answers ['yes'] / ['no']); label tasks as `mc` with the task's sorted label set as
choices; the 20 dollar-amount rows of statutory_reasoning_assessment as `numeric`. Left out: `rule_qa` (long free
-text reference answers, not gradable by matching) and `eurlex` (opaque EuroVoc concept ids with no names).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from metaconf.data.schema import LETTERS, Question
from metaconf.errors import DataError

TEST_DIR = "test_tsv_2023-03-10_49bf0a8"
EXCLUDED_TASKS = {"rule_qa": "free-text reference answers", "eurlex": "opaque EuroVoc concept ids as labels"}

BOOLEAN_QUESTIONS = {
    "hearsay": "Is the following evidence hearsay?",
    "proa": "Does the following statute create a private right of action?",
    "overruling": "Does the following sentence from a judicial opinion overrule a previous case?",
    "personal_jurisdiction": "Does the court have personal jurisdiction over the defendant in the following case?",
    "corporate_lobbying": "Is the following bill relevant to the company described below, so that the company"
    " would plausibly lobby on it?",
    **{
        f"diversity_{k}": "Is there diversity jurisdiction (complete diversity and an amount in controversy over"
        " $75,000) in the following case?"
        for k in range(1, 7)
    },
}
MC_QUESTIONS = {
    "abercrombie": "Under the Abercrombie spectrum of trademark distinctiveness, which category does the"
    " following mark belong to?",
    "intra_rule_distinguishing": "Which area of law does the following fact pattern concern?",
    "statutory_reasoning_assessment": "Given the statute and facts below, is the final statement entailed or"
    " contradicted?",
}
TAX_QUESTION = "Given the statutes and facts below, answer the final question with a dollar amount."
_DOLLARS = re.compile(r"\$?-?[\d,]+(\.\d+)?")


def _fix_mojibake(text: str) -> str:
    """Some cells carry Windows-1252 punctuation stored as C1 control characters; map them back."""

    def fix(m: re.Match[str]) -> str:
        try:
            return bytes([ord(m.group())]).decode("cp1252")
        except UnicodeDecodeError:
            return m.group()

    return re.sub("[\x80-\x9f]", fix, text)


def _case_text(task: str, row: dict[str, str], where: str) -> str:
    if task == "corporate_lobbying":
        parts = [
            ("Bill title", "bill_title"),
            ("Bill summary", "bill_summary"),
            ("Company", "company_name"),
            ("Company description", "company_description"),
        ]
        text = "\n".join(f"{label}: {(row.get(col) or '').strip()}" for label, col in parts)
    else:
        text = row.get("text") or ""
        if task == "statutory_reasoning_assessment":
            text = re.sub(r"\s*<br>\s*", "\n", text)
    if not text.strip():
        raise DataError(f"{where}: empty case text")
    return _fix_mojibake(text.strip())


def task_slug(task: str) -> str:
    """Task folder name as an id part: lower case, spaces to underscores."""
    return re.sub(r"\s+", "_", task.strip()).lower()


def _task_rows(path: Path) -> tuple[list[tuple[str, dict[str, str]]], list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        rows = [(f"{path}:{reader.line_num}", row) for row in reader]
    if not rows:
        raise DataError(f"{path}: no rows")
    if "label" not in (reader.fieldnames or []):
        raise DataError(f"{path}: no 'label' column")
    return rows, sorted({(r.get("label") or "").strip() for _, r in rows})


def _item(
    task: str, label: str, mc_labels: list[str], text: str, where: str
) -> tuple[str, list[str] | None, list[str], str]:
    """(question, choices, answers, answer type) of one row of `task`, by the kind of its label."""
    if task.startswith("CUAD_") or task in BOOLEAN_QUESTIONS:
        if label.lower() not in ("yes", "no"):
            raise DataError(f"{where}: label {label!r} is not Yes/No")
        prompt = BOOLEAN_QUESTIONS.get(task) or (
            f"Does the following contract clause contain a provision of the type '{task[5:]}'?"
        )
        return f"{prompt}\n\n{text}", None, [label.lower()], "boolean"
    if label in mc_labels:
        return f"{MC_QUESTIONS[task]}\n\n{text}", list(mc_labels), [LETTERS[mc_labels.index(label)]], "mc"
    if task == "statutory_reasoning_assessment" and _DOLLARS.fullmatch(label):
        return f"{TAX_QUESTION}\n\n{text}", None, [label.lstrip("$").replace(",", "")], "numeric"
    raise DataError(f"{where}: unexpected label {label!r} for task {task}")


def load_legalbench(folder: Path, split: str) -> list[Question]:
    """Every supported task that has a test.tsv, in task-name order."""
    root = folder / TEST_DIR
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected LegalBench <task>/test.tsv files)")
    out: list[Question] = []
    for task_dir in sorted(p for p in root.iterdir() if (p / "test.tsv").is_file()):
        task = task_dir.name
        cuad = task.startswith("CUAD_")
        if task in EXCLUDED_TASKS or not (cuad or task in BOOLEAN_QUESTIONS or task in MC_QUESTIONS):
            continue
        rows, labels = _task_rows(task_dir / "test.tsv")
        slug = task_slug(task)
        mc_labels = ["Contradiction", "Entailment"] if task == "statutory_reasoning_assessment" else labels
        for i, (where, row) in enumerate(rows):
            label = (row.get("label") or "").strip()
            item = _item(task, label, mc_labels, _case_text(task, row, where), where)
            out.append(Question(f"legalbench/{slug}/{i}", "legalbench", "legal", *item, meta={"task": task}))
    if not out:
        raise DataError(f"{root}: no supported LegalBench task folders with test.tsv")
    return out
