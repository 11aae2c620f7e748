"""`load_dataset` and `split_questions`: the one entry point from names, folders and files to Questions."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from metaconf.data.ids import rank_key
from metaconf.data.registry import DATASETS, DatasetInfo
from metaconf.data.schema import Question
from metaconf.errors import DataError
from metaconf.io import iter_jsonl_objects, write_jsonl

DATA_DIR_ENV = "METACONF_DATA_DIR"
BUNDLED_DIR = Path(__file__).parent / "bundled"


def bundled_path(name: str) -> Path:
    """Where the packaged sample of a registered dataset lives."""
    return BUNDLED_DIR / f"{name}.jsonl.gz"


def read_questions_jsonl(path: Path) -> list[Question]:
    """Question dicts, one per line (gzip if the name ends in .gz), as written by `write_questions_jsonl`."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    out = []
    for lineno, row in iter_jsonl_objects(path):
        try:
            out.append(Question.from_dict(row))
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}:{lineno}: not a Question record ({exc.__class__.__name__}: {exc})") from None
    return out


def write_questions_jsonl(questions: list[Question], path: Path) -> None:
    """Write Question dicts one per line, atomically; gzip (reproducible, no mtime) for .gz."""
    write_jsonl(path, [q.to_dict() for q in questions], sort_keys=True)


def dataset_folder(info: DatasetInfo, path: str | os.PathLike[str] | None) -> Path | None:
    """The folder with a registered dataset's full files: `path` itself, or $METACONF_DATA_DIR/<folder>."""
    if path is not None:
        return Path(path)
    root = os.environ.get(DATA_DIR_ENV)
    return Path(root) / info.folder if root else None


def load_registered(info: DatasetInfo, split: str | None, folder: Path | None) -> list[Question]:
    """A registered dataset's split from its full files in `folder`, or the bundled sample when folder is None."""
    split = split or info.default_split
    if folder is None:
        if split != info.default_split:
            raise DataError(
                f"{info.name}: the bundled sample has only split '{info.default_split}'; for split "
                f"'{split}' pass path=FOLDER or set {DATA_DIR_ENV}"
            )
        return read_questions_jsonl(bundled_path(info.name))
    if split not in info.splits:
        raise DataError(f"{info.name}: unknown split '{split}' (choose from {', '.join(info.splits)})")
    if not folder.is_dir():
        raise DataError(
            f"{folder}: data folder for {info.name} not found (expected a folder laid out like "
            f"shared/data/{info.folder}/)"
        )
    assert info.loader is not None
    return info.loader(folder, split)


def subset(questions: list[Question], limit: int, seed: int = 0) -> list[Question]:
    """`limit` questions chosen by a seeded hash of their ids (not the first rows), returned sorted by id."""
    if limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    chosen = sorted(questions, key=lambda q: rank_key(seed, "subset", q.id))[:limit]
    return sorted(chosen, key=lambda q: q.id)


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    split: str | None = None,
    limit: int | None = None,
    path: str | os.PathLike[str] | None = None,
    seed: int = 0,
    **field_mapping: Any,
) -> list[Question]:
    """Load questions from a registered name (bundled sample, or full files via `path` / $METACONF_DATA_DIR),
    a .jsonl/.json/.csv/.parquet file, a saved Hugging Face dataset folder, or `hf:owner/name` (needs network).
    An unregistered name with `path=` reads that file or folder and uses the name as the dataset name.

    `field_mapping` (files only): question=, answers=, choices=, id= (column names), answer_type=, domain=,
    dataset=. `limit` takes a seeded random subset. Raises a one-line DataError on any problem."""
    name = str(name_or_path)
    if name in DATASETS:
        if field_mapping:
            raise DataError(f"{name}: field mappings ({', '.join(field_mapping)}) apply only to user files")
        info = DATASETS[name]
        questions = load_registered(info, split, dataset_folder(info, path))
        source = f"{name} ({'bundled sample' if dataset_folder(info, path) is None else dataset_folder(info, path)})"
    else:
        from metaconf.data.files import load_file  # pyarrow / datasets imported only when needed

        if path is not None:  # a user file or folder named `name`: the name becomes the dataset name
            field_mapping.setdefault("dataset", name)
            name = str(path)
        questions = load_file(name, split=split, **field_mapping)
        source = name
    if not questions:
        raise DataError(f"{source}: no questions loaded")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in Counter(ids).items() if n > 1)
        raise DataError(f"{source}: duplicate question id '{dup}'")
    if limit is not None:
        questions = subset(questions, limit, seed)
        if not questions:
            raise DataError(f"{source}: limit={limit} leaves no questions")
    return questions


def split_questions(
    questions: list[Question],
    held_out: int,
    seed: int = 0,
) -> tuple[list[Question], list[Question]]:
    """Split into (train, held_out) by a seeded hash of each id: deterministic, disjoint, independent of input
    order. `held_out` is the number of questions held out. Both parts come back sorted by id."""
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise DataError("split_questions: question ids are not unique")
    if isinstance(held_out, bool) or not isinstance(held_out, int):
        raise DataError(f"held_out must be a count of questions (an int), got {held_out!r}")
    if not 0 <= held_out <= len(questions):
        raise DataError(f"held_out={held_out} is outside 0..{len(questions)} (the number of questions)")
    n = held_out
    ranked = sorted(questions, key=lambda q: rank_key(seed, "split", q.id))
    by_id = lambda q: q.id  # noqa: E731
    return sorted(ranked[n:], key=by_id), sorted(ranked[:n], key=by_id)
