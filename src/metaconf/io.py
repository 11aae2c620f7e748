"""Small file helpers, each said once: every file metaconf writes lands whole or not at all (a temp file in the same
folder, fsynced, renamed into place, the folder fsynced), and every JSON / JSONL file is read with one-line errors
naming `FILE:LINE`."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from metaconf.errors import DataError

# ------------------------------------------------------------------------------------------------------- writing


def _new_temp(path: Path, folder: bool = False) -> Path:
    """A new empty hidden file (or folder) beside `path`, with its suffix (so writers that go by the name pick the
    format) and the permissions a plain open() / mkdir() would give (mkstemp's 0600 would make results private)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            if folder:
                tmp.mkdir()
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; platforms and file systems that cannot open a folder skip it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write `path`'s content to (for writers that want a file name, e.g. matplotlib's
    savefig); when the block ends it is fsynced and renamed onto `path`, and when the block raises it is deleted
    and `path` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_folder(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A new empty folder beside `path` to fill (a saved model, an adapter); when the block ends its files are
    fsynced and it is renamed onto `path`, and when the block raises it is deleted. An existing `path` is replaced,
    or with `replace=False` kept (another process finished the same folder first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path, folder=True)
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file() and not file.is_symlink():
                _fsync_file(file)
        if replace and path.exists():
            shutil.rmtree(path)
        try:
            tmp.rename(path)
        except OSError:
            if replace or not path.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _fsync_folder(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` whole or not at all."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` whole or not at all."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, allow_nan: bool = True, sort_keys: bool = False) -> Path:
    """Write `obj` as indented JSON, atomically; `allow_nan=False` refuses NaN (which is not JSON) with ValueError."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str, allow_nan=allow_nan, sort_keys=sort_keys)
    return write_text_atomic(path, text + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]], *, sort_keys: bool = False) -> Path:
    """Write one JSON object per line, atomically; a name ending in .gz is gzipped reproducibly (no timestamp)."""
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=sort_keys) + "\n" for r in rows).encode("utf-8")
    if Path(path).suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    return write_bytes_atomic(path, data)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes, read in chunks (a file's identity: training data, weights)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# ------------------------------------------------------------------------------------------------------- reading


MAX_INPUT_BYTES = 2**30  # 1 GiB: the largest data or config file read (each is read whole into memory)


def check_regular_file(path: str | Path, limit: int | None = None) -> int:
    """The size of `path`, which must be a regular file (links resolved) of at most `limit` bytes (default:
    MAX_INPUT_BYTES); DataError otherwise. Checked before any byte is read: a FIFO would block the reader forever,
    a link to /dev/zero would read until memory runs out."""
    import stat

    try:
        info = os.stat(path)  # follows links; never opens, so a FIFO does not block
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a pipe" if stat.S_ISFIFO(info.st_mode) else "a device"
        raise DataError(f"{path}: not a regular file ({kind}); give a data file")
    limit = MAX_INPUT_BYTES if limit is None else limit
    if info.st_size > limit:
        raise DataError(f"{path}: {info.st_size:,} bytes, more than the {limit:,} a data file may have")
    return info.st_size


def read_bytes_checked(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (see `check_regular_file`); read with a bound, so a file
    that grows while it is read is refused too."""
    limit = MAX_INPUT_BYTES if limit is None else limit
    check_regular_file(path, limit)
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{path}: more than the {limit:,} bytes a data file may have")
    return data


def read_text_checked(path: str | Path) -> str:
    """A UTF-8 text file's text (gunzipped when the name ends in .gz; a leading byte-order mark dropped); invalid
    UTF-8 raises DataError naming the file, the line and the byte offset. Only regular files of at most
    MAX_INPUT_BYTES (also once gunzipped) are read."""
    path = Path(path)
    data = read_bytes_checked(path)
    if path.suffix == ".gz":
        try:
            data = _gunzip_bounded(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: not a readable gzip file ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: invalid UTF-8 (byte 0x{data[exc.start]:02x} at byte offset {exc.start}); "
            f"save the file as UTF-8"
        ) from None


def _gunzip_bounded(data: bytes) -> bytes:
    """Gunzip at most MAX_INPUT_BYTES (a small gzip bomb would otherwise fill memory)."""
    import zlib

    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_INPUT_BYTES + 1)
    if len(out) > MAX_INPUT_BYTES:
        raise OSError(f"more than {MAX_INPUT_BYTES:,} bytes once gunzipped")
    if not inflater.eof:
        raise EOFError("truncated gzip data")
    return out


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is refused (json would keep the last one silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"key {twice!r} given twice in one object")
    return obj


def loads_checked(text: str, where: str, *, name_line: bool = False) -> Any:
    """json.loads with every failure (bad JSON, nesting too deep for the parser) as a DataError naming `where`;
    `name_line`: `text` is a whole file, so a JSON error names its line too (`where:LINE`)."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}{f':{exc.lineno}' if name_line else ''}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # a key given twice; an integer of more digits than Python converts (4,300)
        raise DataError(f"{where}: invalid JSON ({str(exc).split(';')[0]})") from None


def read_json(path: str | Path) -> Any:
    """A JSON file's value; bad JSON raises DataError `FILE:LINE: invalid JSON (...)`."""
    return loads_checked(read_text_checked(path), str(path), name_line=True)


def iter_jsonl_objects(path: str | Path, *, truncated_tail_ok: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object raises DataError
    `FILE:LINE: problem`. Invalid UTF-8 is named by line and byte offset; a byte-order mark is accepted.

    `truncated_tail_ok`: for files appended to line by line, a last line without its newline that is not valid
    JSON (a crash mid-append) is skipped instead of raising."""
    text = read_text_checked(path)
    lines = text.split("\n")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if truncated_tail_ok and lineno == len(lines):
            try:
                row = loads_checked(line, f"{path}:{lineno}")
            except DataError:
                return
        else:
            row = loads_checked(line, f"{path}:{lineno}")
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield lineno, row


def read_jsonl(path: str | Path, *, missing_ok: bool = False, truncated_tail_ok: bool = False) -> list[dict[str, Any]]:
    """The objects of a JSONL file (see `iter_jsonl_objects`); `missing_ok`: a missing file has no rows."""
    if missing_ok and not Path(path).is_file():
        return []
    return [row for _, row in iter_jsonl_objects(path, truncated_tail_ok=truncated_tail_ok)]
