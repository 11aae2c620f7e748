"""User data: .jsonl/.json/.csv/.tsv/.parquet files, saved Hugging Face datasets and `hf:owner/name` hub datasets,
turned into Questions through a field mapping (which column holds the question, the gold answer, the options...).
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import numbers
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metaconf.data.ids import short_hash
from metaconf.data.schema import ANSWER_TYPES, LETTERS, Question
from metaconf.errors import DataError
from metaconf.io import check_regular_file, iter_jsonl_objects, read_json, read_text_checked
from metaconf.names import name_problem
from metaconf.text import text_problem

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
MAPPING_KEYS = ("question", "answers", "choices", "id", "answer_type", "domain", "dataset")
# columns tried, in order, when a field is not mapped explicitly
DEFAULT_COLUMNS = {
    "question": ("question", "Question", "prompt", "input", "problem"),
    "answers": ("answers", "answer", "gold", "label", "target"),
    "choices": ("choices", "options"),
    "id": ("id",),
}
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?")

Row = tuple[str, dict[str, Any]]  # (where: "file:line", row)


# ---------------------------------------------------------------------------------------------------- readers


def _rows_jsonl(path: Path) -> Iterator[Row]:
    for lineno, row in iter_jsonl_objects(path):
        yield f"{path}:{lineno}", row


def _rows_json(path: Path) -> Iterator[Row]:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: item {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}: item {i}", row


def _rows_csv(path: Path, delimiter: str) -> Iterator[Row]:
    with io.StringIO(read_text_checked(path), newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{where}: expected {len(reader.fieldnames or [])} columns, got a different number")
                yield where, row
        except csv.Error as exc:  # e.g. a field over csv's size limit, an unclosed quote at the end
            raise DataError(
                f"{path}:{reader.line_num + 1}: not readable as {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})"
            ) from None


def _rows_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}: row {i}", row


def _pick_split(obj: Any, split: str | None, source: str) -> Any:
    """A `datasets.Dataset` from a Dataset or DatasetDict: the named split, the only one, or 'test'."""
    if not hasattr(obj, "keys"):  # a plain Dataset
        return obj
    splits = list(obj.keys())
    chosen = split or (splits[0] if len(splits) == 1 else "test" if "test" in splits else None)
    if chosen not in splits:
        raise DataError(f"{source}: choose a split with split= (available: {', '.join(splits)})")
    return obj[chosen]


def _rows_hf_disk(path: Path, split: str | None) -> Iterator[Row]:
    import datasets

    try:
        obj = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a saved Hugging Face dataset ({exc.__class__.__name__}: {exc})") from None
    for i, row in enumerate(_pick_split(obj, split, str(path))):
        yield f"{path}: row {i}", row


def _rows_hub(name: str, split: str | None) -> Iterator[Row]:
    try:
        import datasets
    except ImportError:
        raise DataError(f"hf:{name}: needs the 'datasets' package (pip install 'metaconf[hub]')") from None
    try:
        obj = datasets.load_dataset(name, split=split) if split else datasets.load_dataset(name)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DataError(f"hf:{name}: could not load from the Hugging Face hub ({msg})") from None
    for i, row in enumerate(_pick_split(obj, split, f"hf:{name}")):
        yield f"hf:{name}: row {i}", row


def read_rows(name: str, split: str | None = None) -> tuple[str, list[Row]]:
    """(default dataset name, every row) of a user source; the whole file is read before anything is returned."""
    if name.startswith("hf:"):
        hub = name[3:]
        return hub.rsplit("/", 1)[-1], list(_rows_hub(hub, split))
    path = Path(name)
    if path.is_dir():
        return path.name, list(_rows_hf_disk(path, split))
    if not path.exists():
        from metaconf.data.registry import DATASETS

        if path.suffix.lower() in FILE_SUFFIXES or path.parent != Path("."):
            raise DataError(f"{path}: file not found")
        raise DataError(
            f"unknown dataset '{name}' (registered: {', '.join(DATASETS)}; or give a file path, "
            f"a saved Hugging Face dataset folder or hf:owner/name)"
        )
    suffix = path.suffix.lower()
    check_regular_file(path)  # before any reader opens it: not a FIFO, not /dev/zero, not over the size limit
    if suffix == ".jsonl":
        rows = _rows_jsonl(path)
    elif suffix == ".json":
        rows = _rows_json(path)
    elif suffix in (".csv", ".tsv"):
        rows = _rows_csv(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        rows = _rows_parquet(path)
    else:
        raise DataError(
            f"{path}: unsupported file type '{suffix}' (use {', '.join(FILE_SUFFIXES)} or a saved "
            f"Hugging Face dataset folder)"
        )
    return path.stem, list(rows)


# ---------------------------------------------------------------------------------------------------- values


_SCALARS = (str, numbers.Number)


def _scalar(value: Any, where: str, field: str) -> Any:
    """`value` when it is text or a number; a nested object or list is refused (never turned into its repr)."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise DataError(f"{where}: field '{field}': {problem}")
        return value
    if isinstance(value, _SCALARS) or value is None:
        return value
    kind = (
        "an object"
        if isinstance(value, dict)
        else "a list"
        if isinstance(value, (list, tuple))
        else (f"a {type(value).__name__}")
    )
    raise DataError(f"{where}: field '{field}': expected text or a number, got {kind}")


def _as_list(value: Any, where: str, what: str, strict: bool = True) -> list[Any]:
    """A list from a list value, a dict of options (ordered by key; choices only), or a JSON / Python-literal list
    in text. With strict=False, text that only looks like a list (an answer such as "[sic] ...") stays one string.
    Every item must be text or a number."""
    if isinstance(value, str) and value.strip().startswith(("[", "{")):
        text = value.strip()
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError, or an integer of more than 4,300 digits
            try:
                value = ast.literal_eval(text)  # a literal parser: never evaluates code
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                if strict:
                    raise DataError(f"{where}: {what} {text[:40]!r} is not a list") from None
    if isinstance(value, dict) and what == "choices":
        value = [value[k] for k in sorted(value, key=str)]
    if isinstance(value, tuple) or type(value).__name__ == "ndarray":
        value = list(value)
    items = value if isinstance(value, list) else [value]
    return [_scalar(item, where, what) for item in items]


def _empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _number(value: Any, where: str) -> str:
    if isinstance(value, bool):
        raise DataError(f"{where}: numeric answer {value!r} is not a number")
    text = str(value).strip().lstrip("$")
    if "," in text:  # 1,500 is fifteen hundred; 1,5 may be one and a half: refused, not read as 15
        if not _THOUSANDS.fullmatch(text):
            raise DataError(
                f"{where}: numeric answer {str(value)[:40]!r}: a comma only separates thousands (1,500); write "
                f"a decimal point (1.5)"
            )
        text = text.replace(",", "")
    if len(text) > 400 or not _NUMBER.fullmatch(text):
        raise DataError(f"{where}: numeric answer {str(value)[:40]!r} is not a number (or has over 400 characters)")
    number = float(text)
    if not math.isfinite(number):
        raise DataError(f"{where}: numeric answer {str(value)[:40]!r} is too large to compare (not finite)")
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def _boolean(value: Any, where: str) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    if text in ("yes", "true", "1", "y", "t"):
        return "yes"
    if text in ("no", "false", "0", "n", "f"):
        return "no"
    raise DataError(f"{where}: boolean answer {value!r} is not yes/no/true/false/1/0")


def mc_letter(gold: Any, choices: list[str], where: str) -> str:
    """The option letter for a gold given as a letter, a 0-based index or the option's text."""
    letters = LETTERS[: len(choices)]
    if isinstance(gold, bool):
        raise DataError(f"{where}: multiple-choice answer {gold!r} is not a letter, index or option text")
    if isinstance(gold, int) or (isinstance(gold, float) and gold.is_integer()):
        if 0 <= int(gold) < len(choices):
            return letters[int(gold)]
        raise DataError(f"{where}: answer index {gold} is out of range for {len(choices)} options")
    text = str(gold).strip()
    if len(text) == 1 and text.upper() in letters and text.upper() == text:
        return text
    by_text = [i for i, c in enumerate(choices) if c.strip().casefold() == text.casefold()]
    digits = text.isascii() and text.isdigit() and len(text) <= 6  # not '²', not 5,000 digits
    by_index = int(text) if digits and int(text) < len(choices) else None
    if by_text and by_index is not None and by_text[0] != by_index:
        raise DataError(
            f"{where}: answer {text!r} is both option {letters[by_text[0]]}'s text and index "
            f"{by_index}; give the letter instead"
        )
    if by_text:
        return letters[by_text[0]]
    if by_index is not None:
        return letters[by_index]
    if len(text) == 1 and text.upper() in letters:  # a lower-case letter that is no option's text
        return text.upper()
    raise DataError(
        f"{where}: answer {text[:60]!r} is not a letter {letters[0]}-{letters[-1]}, a 0-based index or "
        f"one of the options"
    )


# ---------------------------------------------------------------------------------------------------- mapping


def _resolve(field: str, mapped: Any, columns: list[str], source: str, required: bool) -> list[str] | None:
    """Column name(s) for a field: the mapping (checked later per row) or the first default column present."""
    if mapped is not None:
        cols = [mapped] if isinstance(mapped, str) else list(mapped)
        if not cols or not all(isinstance(c, str) for c in cols):
            raise DataError(f"{source}: field mapping {field}= must be a column name or a list of column names")
        return cols
    for col in DEFAULT_COLUMNS[field]:
        if col in columns:
            return [col]
    if required:
        raise DataError(
            f"{source}: no {field} column (tried {', '.join(DEFAULT_COLUMNS[field])}; columns: "
            f"{', '.join(columns)}); pass {field}='COLUMN'"
        )
    return None


def _get(row: dict[str, Any], cols: list[str], field: str, where: str) -> list[Any]:
    missing = [c for c in cols if c not in row]
    if missing:
        raise DataError(
            f"{where}: column '{missing[0]}' (mapped to {field}) not found; columns: {', '.join(map(str, row))}"
        )
    return [row[c] for c in cols]


def _row_choices(row: dict[str, Any], c_cols: list[str], answer_type: str, where: str) -> list[str]:
    """The non-empty options of one row: one list column, or one option per column."""
    raw = _get(row, c_cols, "choices", where)
    items = _as_list(raw[0], where, "choices") if len(c_cols) == 1 else [_scalar(v, where, "choices") for v in raw]
    choices = [str(c).strip() for c in items if not _empty(c)]
    if answer_type == "mc" and not 2 <= len(choices) <= len(LETTERS):
        raise DataError(f"{where}: need 2-{len(LETTERS)} non-empty choices, got {len(choices)}")
    return choices


def _row_answers(
    row: dict[str, Any],
    a_cols: list[str] | None,
    answer_type: str,
    choices: list[str] | None,
    answers_required: bool,
    where: str,
) -> list[str]:
    """One row's gold answers in the answer type's normal form (letters, numbers, yes/no or stripped text)."""
    optional = not answers_required and not any(c in row for c in a_cols or [])  # an unlabelled row to ask
    raw_answers = [] if not a_cols or optional else _get(row, a_cols, "answers", where)
    golds = [
        g
        for v in raw_answers
        for g in (_as_list(v, where, "answers", strict=False) if len(a_cols) == 1 else [_scalar(v, where, "answers")])
    ]
    golds = [g for g in golds if not _empty(g)]
    if not golds and answers_required:
        raise DataError(f"{where}: no gold answer in column '{a_cols[0]}'")
    if answer_type == "mc":
        return [mc_letter(g, choices or [], where) for g in golds]
    if answer_type == "numeric":
        return [_number(g, where) for g in golds]
    if answer_type == "boolean":
        return [_boolean(g, where) for g in golds]
    return [str(g).strip() for g in golds]


def load_file(name: str, *, split: str | None = None, answers_required: bool = True, **mapping: Any) -> list[Question]:
    """Questions from a user file / saved HF dataset / hub name, following the field mapping (see load_dataset).
    `answers_required=False` (questions to ask, not to grade): rows without a gold answer load with `answers=[]`."""
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise DataError(f"{name}: unknown field mapping '{unknown[0]}' (allowed: {', '.join(MAPPING_KEYS)})")
    default_name, rows = read_rows(name, split)
    if not rows:
        raise DataError(f"{name}: no rows")
    dataset = str(mapping.get("dataset") or default_name)
    problem = name_problem(dataset)
    if problem:  # the dataset names prediction files (RUN/predictions/<condition>__<task>__<dataset>.jsonl)
        raise DataError(
            f"{name}: dataset name {dataset[:80]!r}{' (dataset=)' if mapping.get('dataset') else ''}: {problem}"
        )
    domain = str(mapping.get("domain") or "general")
    columns = list(rows[0][1])
    q_col = _resolve("question", mapping.get("question"), columns, name, True)
    a_cols = _resolve("answers", mapping.get("answers"), columns, name, answers_required)
    c_cols = _resolve("choices", mapping.get("choices"), columns, name, False)
    id_col = _resolve("id", mapping.get("id"), columns, name, False)
    answer_type = mapping.get("answer_type") or ("mc" if c_cols else "open")
    if answer_type not in ANSWER_TYPES:
        raise DataError(f"{name}: answer_type must be one of {', '.join(ANSWER_TYPES)}, got {answer_type!r}")
    if answer_type == "mc" and not c_cols:
        raise DataError(f"{name}: answer_type 'mc' needs choices='COLUMN' (a list column or a list of columns)")

    out: list[Question] = []
    seen: dict[str, int] = {}
    for where, row in rows:
        question = _scalar(_get(row, q_col, "question", where)[0], where, "question")
        if _empty(question):
            raise DataError(f"{where}: empty question in column '{q_col[0]}'")
        question = str(question).strip()
        choices = _row_choices(row, c_cols, answer_type, where) if c_cols else None
        answers = _row_answers(row, a_cols, answer_type, choices, answers_required, where)
        if id_col:
            source_id = _scalar(_get(row, id_col, "id", where)[0], where, "id")
            if _empty(source_id):
                raise DataError(f"{where}: empty id in column '{id_col[0]}'")
            qid = f"{dataset}/{source_id}"
        else:
            qid = f"{dataset}/{short_hash(question, *(choices or []))}"
            seen[qid] = seen.get(qid, 0) + 1
            qid = qid if seen[qid] == 1 else f"{qid}-{seen[qid]}"  # repeated identical questions
        out.append(
            Question(
                id=qid,
                dataset=dataset,
                domain=domain,
                question=question,
                choices=choices,
                answers=list(dict.fromkeys(answers)),
                answer_type=answer_type,
            )
        )
    return out
