"""Reading a YAML settings file (a study config, any command's `--config FILE`) without surprises.

Plain `yaml.safe_load` keeps the last of two equal keys silently and expands alias bombs; here a key given twice,
absurd nesting, a binary or non-UTF-8 file are each refused in one line naming the file (and line where known).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from metaconf.errors import ConfigError
from metaconf.io import read_bytes_checked
from metaconf.text import check_strings


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key; construct_mapping reports it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (lines {first} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


MAX_CONFIG_DEPTH = 32  # a study config nests 4-5 levels; deeper is a mistake or a hostile file


MAX_CONFIG_VALUES = 100_000  # counted with YAML aliases expanded: refuses an alias bomb ("billion laughs")


def _depth(obj: Any) -> int:
    """How deeply lists and mappings nest in `obj` (iteratively: a hostile file must not blow the stack); a value
    with more than MAX_CONFIG_VALUES parts counts as too deep."""
    deepest, stack, seen = 0, [(obj, 1)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            return MAX_CONFIG_DEPTH + 1
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_CONFIG_DEPTH:
                stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_config_text(text: str, source: str) -> Any:
    """The YAML value of a config's text: duplicate keys and absurd nesting are refused, naming `source`."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a study config") from None
    if _depth(raw) > MAX_CONFIG_DEPTH:
        raise ConfigError(
            f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep or more than "
            f"{MAX_CONFIG_VALUES:,} values (YAML aliases expanded); not a study config"
        )
    return check_strings(raw, source, ConfigError)  # a "\ud800" escape is valid YAML, not valid text


def read_config_file(path: str | Path) -> Any:
    """The YAML value of a settings file (a study config, `--config FILE` of any command): a missing, binary or
    non-UTF-8 file, duplicate keys and absurd nesting are refused in one line naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    data = read_bytes_checked(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (invalid byte at offset {exc.start}); a config file is a YAML file"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: a binary file (NUL bytes), not a YAML config")
    return read_config_text(text, str(path))


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A config file that must hold a mapping of settings (e.g. RUN/config.yaml), as written; one line otherwise."""
    raw = read_config_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return raw
