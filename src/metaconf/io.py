"""Small file helpers: every file metaconf writes lands whole or not at all (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_text_checked(path: str | Path) -> str:
    """A UTF-8 text file's text (a leading byte-order mark dropped); invalid UTF-8 raises DataError naming the
    file, the line and the byte offset."""
    from metaconf.errors import DataError

    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte 0x{data[exc.start]:02x} at byte offset {exc.start}); "
                        f"save the file as UTF-8") from None


def loads_checked(text: str, where: str) -> Any:
    """json.loads with every failure (bad JSON, nesting too deep for the parser) as a DataError naming `where`."""
    from metaconf.errors import DataError

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object raises DataError
    naming `path:line`. Invalid UTF-8 is named by line and byte offset; a byte-order mark is accepted."""
    from metaconf.errors import DataError

    for lineno, line in enumerate(read_text_checked(path).split("\n"), 1):
        if line.strip():
            row = loads_checked(line, f"{path}:{lineno}")
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def read_jsonl(path: str | Path, missing_ok: bool = False) -> list[Any]:
    """Rows of a JSONL file; a bad line raises DataError naming the file and line."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return []
    rows = []
    for lineno, line in enumerate(read_text_checked(path).split("\n"), 1):
        if line.strip():
            rows.append(loads_checked(line, f"{path}: line {lineno}"))
    return rows
