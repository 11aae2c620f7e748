"""Text as it enters metaconf (argv, config files, data files): every string must be encodable as UTF-8, so a lone
surrogate (from undecodable argv bytes or a JSON / YAML `\\ud800` escape) is refused where it enters, naming the
flag, the config field or the data file's line and field, instead of failing later in whatever writes it (a
config.yaml that no longer reads back, an SQLite store, an HTTP request)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from metaconf.errors import MetaconfError


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored or sent as UTF-8 text, or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid text ({ascii(value[exc.start])} at character {exc.start} is a lone surrogate)"
    return None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(field path, string) of every string in a nested value, keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                yield where, key
            yield from _strings(item, where)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}.{i}" if path else str(i))


def check_strings(value: Any, where: str, error: type[MetaconfError] = MetaconfError, field: str = "") -> Any:
    """`value` when every string in it is valid text, else `error` naming `where` and the field path."""
    for path, text in _strings(value, field):
        problem = text_problem(text)
        if problem:
            raise error(f"{where}: {f'field {path!r}: ' if path else ''}{problem}")
    return value


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")


def redact(text: str) -> str:
    """`text` with the user info of every URL in it replaced (`http://user:password@host` -> `http://***@host`): the
    one redaction used for every message, stored config and record that may hold a URL (the API key itself is
    never in them: it is read from the environment)."""
    return _URL_USERINFO.sub(r"\1***@", text)
