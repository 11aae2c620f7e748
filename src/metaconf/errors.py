"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class MetaconfError(Exception):
    """Base class: a problem with the user's input or environment, printed as one line."""


class DataError(MetaconfError):
    """Bad or missing data: names the file and line or field."""


class ConfigError(MetaconfError):
    """An invalid study config: names the field."""


class EngineError(MetaconfError):
    """An engine could not produce completions (server refused, model missing...)."""


def field_location(error: dict) -> str:
    """A pydantic error's field as a dotted path ('training.lora.rank'); '(top level)' for the model itself."""
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def validation_error(source: str, exc: ValidationError, prefix: str = "") -> ConfigError:
    """The one-line error for an invalid config: `SOURCE: field 'PREFIX.FIELD': MESSAGE (and N more)`.

    `source` names where the values came from (a file, 'command line'); `prefix` is the field path of the
    validated model inside a larger config."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(p for p in (prefix, field_location(first) if first["loc"] else "") if p) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{source}: field '{where}': {first['msg']}{more}")
