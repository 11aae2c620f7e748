"""The one rule for every name that becomes a file or folder name (study, condition, training set, dataset, label,
bundled template), and the one check that a path built from such names stays inside its root (a run folder).

A name is printable text (no control characters, no NUL, no lone surrogates), holds no path separator, is not and
does not contain `..`, and is at most NAME_MAX characters (file systems refuse components over 255 bytes; the
longest file metaconf builds from names joins three of them). Checked where the name is read (config fields,
flags, data files) and again where a path is built from it (`inside`), so a name that slipped past a reader still
cannot write outside the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from metaconf.errors import MetaconfError

NAME_MAX = 64
NAME_MAX_BYTES = 80  # UTF-8: three names and a suffix stay under the 255-byte file-name limit
_SEPARATORS = ("/", "\\")


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a file or folder name, or None when it can."""
    if not isinstance(value, str) or not value:
        return "a name must be non-empty text"
    if len(value) > NAME_MAX:
        return f"a name is at most {NAME_MAX} characters (got {len(value)})"
    if len(value.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES:
        return f"a name is at most {NAME_MAX_BYTES} bytes in UTF-8"
    if not value.isprintable():  # control characters, NUL, lone surrogates, line breaks
        bad = next(c for c in value if not c.isprintable())
        return f"a name must be printable text (found {ascii(bad)})"
    if any(sep in value for sep in _SEPARATORS):
        return "a name cannot hold a path separator ('/' or '\\')"
    if value in (".", "..") or ".." in value:
        return "a name cannot be or hold '..'"
    if value != value.strip():
        return "a name cannot start or end with a space"
    return None


def check_name(value: str) -> str:
    """`value` when it is a valid name, else ValueError saying why (pydantic turns it into a field error)."""
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A config field holding a name that becomes a file or folder name.
Name = Annotated[str, AfterValidator(check_name)]


def inside(root: str | Path, *names: str) -> Path:
    """`root / name / name ...`, refusing (MetaconfError) a name that breaks the rule or a result that resolves
    (links followed) outside `root`: the last check before a file is written or deleted."""
    root = Path(root)
    for name in names:
        problem = name_problem(name)
        if problem:
            raise MetaconfError(f"{root}: {name[:NAME_MAX]!r} cannot be used in a file name: {problem}")
    path = root.joinpath(*names)
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise MetaconfError(f"{path}: resolves to {resolved}, outside {root}")
    return path


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be a folder metaconf creates (a component over the file systems' 255-byte limit, or text
    that is not printable), or None."""
    for part in Path(path).parts:
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            return f"the component {part[:40]!r}... is longer than 255 bytes"
        if not part.isprintable():
            return f"the component {part[:40]!r} is not printable text"
    return None


def check_folder(path: str | Path, what: str) -> Path:
    """`path` when it can be a run folder, else MetaconfError naming `what` (the flag or field that gave it)."""
    problem = folder_problem(path)
    if problem:
        raise MetaconfError(f"{what}: {problem}")
    return Path(path)
