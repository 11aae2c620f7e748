"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class MetaconfError(Exception):
    """Base class: a problem with the user's input or environment, printed as one line."""


class DataError(MetaconfError):
    """Bad or missing data: names the file and line or field."""


class ConfigError(MetaconfError):
    """An invalid study config: names the field."""


class EngineError(MetaconfError):
    """An engine could not produce completions (server refused, model missing...)."""
