"""One way from typed settings to the command line: every `metaconf` command is built here from pydantic models.

A command has *options* (its own fields: `--out`, `--quiet`, a positional RUN...) and, for the commands that run a
configurable job, a *config* model (the study config, the training or data-building settings). Every field of both
becomes a flag named by its dotted path (`--training.lora.rank 16`; `--per-dataset` is accepted for `--per_dataset`),
whose help is the field's description. `--config FILE` reads a YAML file of the config model (or of the options,
for commands without one); flags given on the command line override it, field by field. Values are validated by
the models themselves, so a bad value is one line naming the flag or the file's field.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import operator
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from metaconf.configfile import read_config_file, read_config_text
from metaconf.errors import ConfigError, field_location
from metaconf.text import check_strings

CONFIG_FLAG = "--config"
_DEST = "flag:"  # prefix of the argparse dests of model fields (so they never clash with argparse's own)


# -- the fields of a model, as flags -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    """One leaf field of a (nested) model: its dotted path, annotation and pydantic FieldInfo."""

    path: str
    annotation: Any
    info: Any

    @property
    def option(self) -> str:
        return f"--{self.path}"


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    args = get_args(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return (rest[0] if len(rest) == 1 else functools.reduce(operator.or_, rest)), True
    return annotation, False


def _union_parts(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (optional or not), else None."""
    inner, _ = _strip_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def union_models(annotation: Any) -> tuple[type[BaseModel], ...]:
    """The models of a field that holds one of several (optional or not; e.g. a model config per engine kind),
    else ()."""
    inner, _ = _strip_optional(annotation)
    if get_origin(inner) is typing.Annotated:
        inner = get_args(inner)[0]
    parts = _union_parts(inner)
    if len(parts) > 1 and all(isinstance(p, type) and issubclass(p, BaseModel) for p in parts):
        return parts
    return ()


@functools.cache
def merged_fields(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """The fields of several models as one set of fields: each name once, as the first model has it, with the
    choices of a Literal joined and sub-models of the same name merged in turn (every kind's options)."""
    fields: dict[str, Any] = {}
    for model in models:
        for name, info in model.model_fields.items():
            seen = fields.get(name)
            if seen is None:
                fields[name] = info
            elif seen.annotation != info.annotation:
                fields[name] = _merged(seen, info)
    return fields


def _merged(a: Any, b: Any) -> Any:
    """One field for two of the same name: Literal choices joined, or the union of the models they hold."""
    if get_origin(a.annotation) is Literal and get_origin(b.annotation) is Literal:
        annotation: Any = Literal[tuple(dict.fromkeys(get_args(a.annotation) + get_args(b.annotation)))]
    else:
        models = [m for info in (a, b) for m in union_models(info.annotation) or (submodel(info.annotation),)]
        if None in models:
            return a
        annotation = functools.reduce(operator.or_, dict.fromkeys(models))
    merged = copy.copy(a)
    merged.annotation = annotation
    return merged


def model_flags(model: type[BaseModel], prefix: str = "") -> list[Flag]:
    """Every leaf field of `model`, depth first; nested models contribute their fields under `name.`, and a field
    holding one of several models the fields of all of them (`model.engine`, `model.options.tensor_parallel_size`)."""
    return _fields_flags(model.model_fields, prefix)


def _fields_flags(fields: dict[str, Any], prefix: str) -> list[Flag]:
    flags: list[Flag] = []
    for name, info in fields.items():
        path = f"{prefix}{info.alias or name}"
        members = union_models(info.annotation)
        sub = submodel(info.annotation)
        if members:
            flags += _fields_flags(merged_fields(members), f"{path}.")
        elif sub is not None:
            flags += model_flags(sub, f"{path}.")
        else:
            flags.append(Flag(path, info.annotation, info))
    return flags


def _kind(annotation: Any) -> str:
    """How a flag's text becomes a value: 'bool', 'list' (several words), 'records' (several words, each a name or
    a YAML mapping, or one YAML list: lists of models), 'yaml' (mappings, lists of mappings), or 'scalar' (one word,
    converted by the model)."""
    inner, _ = _strip_optional(annotation)
    parts = _union_parts(inner)
    if any(p is bool for p in parts):
        return "bool"
    for part in parts:
        origin = get_origin(part) or part
        if origin in (dict, typing.Mapping):
            return "yaml"
        if origin in (list, tuple, set):
            item = (get_args(part) or (str,))[0]
            item = get_args(item)[0] if get_origin(item) is Literal else item
            if submodel(item) is not None:
                return "records"
            if get_origin(item) in (dict, list):
                return "yaml"
            return "list"
    return "scalar"


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type, from its annotation ('int', 'float or null', 'one of: a, b', ...)."""
    inner, optional = _strip_optional(annotation)
    names = []
    for part in _union_parts(inner):
        if get_origin(part) is typing.Annotated:  # a checked value, e.g. metaconf.names.Name
            part = get_args(part)[0]
            names.append("name" if part is str else type_name(part))
        elif get_origin(part) is Literal:
            names.append("one of: " + ", ".join(str(a) for a in get_args(part)))
        elif get_origin(part) in (list, tuple, set):
            names.append(f"list of {type_name((get_args(part) or (str,))[0])}")
        elif get_origin(part) is dict:
            names.append("mapping")
        elif isinstance(part, type):
            names.append({"str": "text", "Path": "path"}.get(part.__name__, part.__name__))
        else:
            names.append(str(part).replace("typing.", ""))
    return " or ".join(names) + (" or null" if optional else "")


def bounds_text(info: Any) -> str:
    """A numeric field's bounds as its help and docs show them ('1 to 1024', 'at most 20'), or ''."""
    low = next(
        (
            f">= {m.ge}" if hasattr(m, "ge") else f"> {m.gt}"
            for m in info.metadata
            if hasattr(m, "ge") or hasattr(m, "gt")
        ),
        "",
    )
    high = next(
        (
            f"<= {m.le}" if hasattr(m, "le") else f"< {m.lt}"
            for m in info.metadata
            if hasattr(m, "le") or hasattr(m, "lt")
        ),
        "",
    )
    return ", ".join(b for b in (low, high) if b).replace("_", "")


def default_text(info: Any) -> str:
    """The field's default as JSON (`"embedded"`, `null`, `[]`), or 'required' / '(see its fields)'."""
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(value, BaseModel):
            return "(see its fields)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"{len(value)} entries"
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    return json.dumps(value, default=str)


def _metavar(flag: Flag) -> str:
    inner, _ = _strip_optional(flag.annotation)
    kind = _kind(flag.annotation)
    literals = [str(a) for p in _union_parts(inner) if get_origin(p) is Literal for a in get_args(p)]
    if kind == "yaml":
        return "YAML"
    if kind == "records":
        return "NAME_OR_YAML"
    if kind == "bool":
        return "{" + ",".join(["true", "false", *literals]) + "}"
    part = _union_parts(inner)[0]
    if kind == "list":
        part = (get_args(part) or (str,))[0]
        if get_origin(part) is Literal:  # choices are in the help; {a,b,...} repeated would drown the usage
            return flag.path.rpartition(".")[2].upper()
    if literals:
        return "{" + ",".join(literals) + "}"
    return {int: "INT", float: "FLOAT", Path: "PATH"}.get(part, "TEXT")


# -- commands ------------------------------------------------------------------------------------------------------
@dataclass
class Command:
    """A `metaconf` subcommand built from models: `options` (its own fields; `positional` ones are also taken
    without a flag) and, optionally, `config` (the job's settings, read from `--config FILE`, overridden by flags).

    `preset` gives the config's starting values and their name (the demo's config, a run's stored config);
    `config_argument` names a positional argument that is the config file (`metaconf run STUDY.yaml`); `upgrade`
    turns a config file of an older layout into the current one; `check` validates what the model alone cannot;
    `deprecated` maps an old flag to the field path it now sets (`--rank` -> `lora.rank`), or to (path, value) for
    an old switch."""

    name: str
    help: str
    description: str
    options: type[BaseModel]
    run: Callable[..., int]  # run(options) or, with a config model, run(options, config, source)
    config: type[BaseModel] | None = None
    positional: tuple[str, ...] = ()
    preset: Callable[[Any], tuple[dict[str, Any], str]] | None = None
    config_argument: str | None = None
    upgrade: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    check: Callable[[Any, str], None] | None = None
    config_help: str = ""
    deprecated: dict[str, str | tuple[str, Any]] = field(default_factory=dict)
    epilog: str | None = None
    run_folder: str | None = None  # the option naming the run folder it writes into: run under that folder's lock
    creates_run_folder: bool = False  # else a run folder that does not exist is refused before the lock is taken

    def flags(self) -> list[Flag]:
        """Every flag of the command: the options' fields, then the config's."""
        return model_flags(self.options) + (model_flags(self.config) if self.config else [])

    # -- building the parser -------------------------------------------------------------------------------------
    def register(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        words = [f"[{self.config_argument}]"] if self.config_argument else []
        words += [f"[{name.upper()}]" for name in self.positional]
        parser = subparsers.add_parser(
            self.name,
            help=self.help,
            description=self.description,
            epilog=self.epilog,
            usage=f"metaconf {self.name} {' '.join(words + ['[--config FILE]', '[--FIELD VALUE ...]'])}",
        )
        if self.config_argument:
            parser.add_argument(
                "_config_argument",
                nargs="?",
                type=Path,
                metavar=self.config_argument,
                default=None,
                help=f"the config file (same as {CONFIG_FLAG})",
            )
        for name in self.positional:
            info = self.options.model_fields[name]
            parser.add_argument(
                f"_positional_{name}",
                nargs="?",
                metavar=name.upper(),
                default=None,
                help=f"{info.description} (or --{name})",
            )
        what = "the " + self.config.__name__ if self.config else "these options"
        parser.add_argument(
            CONFIG_FLAG,
            dest="_config_file",
            type=Path,
            metavar="FILE",
            default=None,
            help=f"a YAML file of {what}{'; ' + self.config_help if self.config_help else ''}; "
            "flags override its values",
        )
        groups: dict[str, Any] = {}
        for flag in model_flags(self.options):
            if "" not in groups:
                groups[""] = parser.add_argument_group(f"{self.name} options")
            _add_flag(groups[""], flag)
        for flag in model_flags(self.config) if self.config else []:
            section = flag.path.rpartition(".")[0]
            if f"config:{section}" not in groups:
                groups[f"config:{section}"] = parser.add_argument_group(
                    f"{self.config.__name__}{' ' + section if section else ''}"
                )
            _add_flag(groups[f"config:{section}"], flag)
        kinds = {f.path: _kind(f.annotation) for f in self.flags()}
        for old, target in self.deprecated.items():
            path, const = (target, None) if isinstance(target, str) else target
            nargs = 0 if const is not None else "+" if kinds[path] == "list" else None
            parser.add_argument(
                old,
                dest=f"{_DEST}{path}",
                action=_Deprecated,
                path=path,
                const=const,
                nargs=nargs,
                help=argparse.SUPPRESS,
            )
        parser.set_defaults(_command=self)
        return parser

    # -- reading what the user gave ------------------------------------------------------------------------------
    def parse(self, args: argparse.Namespace) -> tuple[BaseModel, BaseModel | None, str]:
        """The validated (options, config, where the config came from) of one invocation."""
        given = {k[len(_DEST) :]: v for k, v in vars(args).items() if k.startswith(_DEST) and v is not None}
        for name in self.positional:
            value = getattr(args, f"_positional_{name}")
            if value is not None:
                if name in given:
                    raise ConfigError(f"{self.name}: {name.upper()} given twice (as an argument and as --{name})")
                given[name] = value
        for path, value in given.items():  # undecodable argv bytes arrive as lone surrogates
            check_strings(value, f"--{path}", ConfigError)
        file, argument = args._config_file, getattr(args, "_config_argument", None)
        if file is not None and argument is not None:
            raise ConfigError(f"{self.name}: the config file is given twice ({argument} and {CONFIG_FLAG} {file})")
        file = file or argument
        option_paths = {f.path for f in model_flags(self.options)}
        option_values = {p: v for p, v in given.items() if p in option_paths}
        config_values = {p: v for p, v in given.items() if p not in option_paths}
        if self.config is None:
            source = str(file) if file else self.name
            return build_model(self.options, read_file(file) if file else {}, option_values, source), None, source
        options = build_model(self.options, {}, option_values, self.name)
        base, source = self.preset(options) if self.preset else ({}, f"{self.name} config")
        if file is not None:
            raw = read_file(file)
            base = deep_merge(base, self.upgrade(raw, str(file)) if self.upgrade else raw)
            source = str(file)
        elif self.config_argument and self.preset is None:
            raise ConfigError(f"{self.name}: give the config file ({self.config_argument} or {CONFIG_FLAG} FILE)")
        config = build_model(self.config, base, config_values, source)
        if self.check:
            self.check(config, source)
        return options, config, source


def _add_flag(group: Any, flag: Flag) -> None:
    kind = _kind(flag.annotation)
    names = [flag.option]
    last = flag.path.rpartition(".")[2]
    if "_" in last:
        names.append(f"--{flag.path.rpartition('.')[0] + '.' if '.' in flag.path else ''}{last.replace('_', '-')}")
    help_text = (flag.info.description or "").replace("%", "%%")
    bounds = f", {bounds_text(flag.info)}" if bounds_text(flag.info) else ""
    help_text += f" [{type_name(flag.annotation)}{bounds}; default: {default_text(flag.info)}]".replace("%", "%%")
    kwargs: dict[str, Any] = {
        "dest": f"{_DEST}{flag.path}",
        "default": None,
        "metavar": _metavar(flag),
        "help": help_text,
    }
    if kind == "bool" and _strip_optional(flag.annotation)[0] is bool:  # --quiet / --no-quiet
        kwargs.update(action=argparse.BooleanOptionalAction)
        del kwargs["metavar"]
    elif kind == "bool":  # a switch with other values too (true / false / auto): always takes its value
        pass
    elif kind in ("list", "records"):
        kwargs.update(nargs="+", action="extend")  # --field a=b --field c=d gives both
    group.add_argument(*names, **kwargs)


class _Deprecated(argparse.Action):
    """An old flag: sets the field it became and says, once, what to write instead."""

    def __init__(self, option_strings: list[str], dest: str, path: str, const: Any = None, **kwargs: Any) -> None:
        self.path = path
        super().__init__(option_strings, dest, const=const, **kwargs)

    def __call__(
        self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ) -> None:
        value = self.const if self.nargs == 0 else values
        new = f"--{'no-' if value is False else ''}{self.path}"
        print(
            f"metaconf: {option_string} is deprecated and will be removed in metaconf 0.3; use {new}", file=sys.stderr
        )
        setattr(namespace, self.dest, value)


# -- values: files, flags, merging, validation ---------------------------------------------------------------------
def read_file(path: Path) -> dict[str, Any]:
    """A YAML (or JSON) settings file as a mapping; every problem is one line naming the file."""
    raw = read_config_file(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return raw


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, mapping by mapping (a list or scalar in `top` replaces the one in `base`)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _flag_value(flag: Flag, value: Any) -> Any:
    """A flag's text as the value the model validates (the model converts '16' to 16, 'true' to True...)."""
    kind = _kind(flag.annotation)
    _, optional = _strip_optional(flag.annotation)
    if kind == "yaml":
        return read_config_text(value, flag.option)
    if kind == "records":  # --conditions base multitask, --conditions "[base, {name: x}]", --data.train "{name: a}"
        items = [read_config_text(word, flag.option) for word in value]
        return items[0] if len(items) == 1 and isinstance(items[0], list) else items
    if kind == "list":
        literals = [
            a
            for p in _union_parts(_strip_optional(flag.annotation)[0])
            if get_origin(p) is Literal
            for a in get_args(p)
        ]
        if len(value) == 1 and value[0] in literals:  # e.g. --lora.target_modules all-linear
            return value[0]
        if optional and value == ["null"]:
            return None
        return list(value)
    if optional and isinstance(value, str) and value.lower() in ("null", "none"):
        return None
    return value


def build_model(model: type[BaseModel], base: dict[str, Any], overrides: dict[str, Any], source: str) -> BaseModel:
    """`model` validated from `base` (preset / file values) with dotted-path `overrides` (flag values) on top.

    An invalid value is one line naming the flag when it came from the command line, else the file's field."""
    flags = {f.path: f for f in model_flags(model)}
    values = dict(base)
    for path, value in overrides.items():
        parts = path.split(".")
        node = values
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[parts[-1]] = _flag_value(flags[path], value)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = field_location(first)
        flag = next((p for p in overrides if where == p or where.startswith(p + ".")), None)
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        if flag is not None:
            raise ConfigError(f"--{flag}: {first['msg']}{more}") from None
        section = where.rpartition(".")[0]
        sibling = next((p for p in overrides if section and p.startswith(section + ".")), None)
        if sibling is not None:  # e.g. --hosted.epochs without --hosted.base_model
            raise ConfigError(f"--{where}: {first['msg']} (with --{sibling}){more}") from None
        raise ConfigError(f"{source}: field '{where}': {first['msg']}{more}") from None


def moved_under(section: str, config: type[BaseModel]) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    """A `Command.upgrade` for files of metaconf 0.1 that held the fields of the model now at `config.<section>`
    at their top level: such a file is read as `{section: file}`, with a deprecation line."""
    model = submodel(config.model_fields[section].annotation)

    def upgrade(raw: dict[str, Any], source: str) -> dict[str, Any]:
        if raw and set(raw) <= set(model.model_fields) and not set(raw) & set(config.model_fields):
            print(
                f"metaconf: {source}: {model.__name__} fields at the top level are deprecated; put them under "
                f"'{section}:'",
                file=sys.stderr,
            )
            return {section: raw}
        return raw

    return upgrade


def dispatch(args: argparse.Namespace) -> int:
    """Run the command an argparse namespace was parsed for."""
    command: Command = args._command
    options, config, source = command.parse(args)
    if command.run_folder is None:
        return int((command.run(options, config, source) if command.config else command.run(options)) or 0)
    from metaconf.lock import holding

    with holding(getattr(options, command.run_folder), f"--{command.run_folder}", create=command.creates_run_folder):
        return int((command.run(options, config, source) if command.config else command.run(options)) or 0)
