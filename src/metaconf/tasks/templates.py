"""Prompt templates as data: YAML files in `tasks/templates/`, rendered with plain `str.format` fields.

Each template puts its fixed instructions first and the question(s) last, so all prompts of one task share a
prefix the engine can reuse, and asks for a direct answer (no chain of thought) to keep generation short.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metaconf.data.schema import ANSWER_TYPES, Question
from metaconf.errors import ConfigError

TEMPLATE_DIR = Path(__file__).parent / "templates"
Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Template:
    """One prompt template. `user` maps answer type -> user text (or holds one text, for `pairwise`)."""

    name: str
    version: int
    description: str
    user: dict[str, str] | str
    output: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    system: str | None = None
    question: dict[str, str] = field(default_factory=dict)  # pairwise: how each question is rendered
    path: str = ""
    # The token limit under guided decoding, where the guide bounds every field so the reply always fits
    # (see tasks/guides.py); None: `max_new_tokens`. Free sampling never uses it, so free runs stay as they were.
    guided_max_new_tokens: int | None = None

    def token_limit(self, guided: bool = False) -> int:
        return (self.guided_max_new_tokens or self.max_new_tokens) if guided else self.max_new_tokens

    def generation(self, guided: bool = False) -> dict[str, Any]:
        """The generation settings this template needs: `max_new_tokens` and `stop`."""
        return {"max_new_tokens": self.token_limit(guided), "stop": list(self.stop)}

    def record(self) -> dict[str, Any]:
        """Name, version and full text: what `templates.json` stores so a run says exactly what it asked."""
        return {
            "name": self.name, "version": self.version, "description": self.description, "system": self.system,
            "user": self.user, "question": self.question or None, "output": self.output,
            "max_new_tokens": self.max_new_tokens, "guided_max_new_tokens": self.guided_max_new_tokens,
            "stop": list(self.stop),
        }


def _require(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: missing field {key!r}")
    if not isinstance(raw[key], kind):
        raise ConfigError(f"{where}: field {key!r} must be {kind.__name__}, got {type(raw[key]).__name__}")
    return raw[key]


def _per_type(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must map answer types ({', '.join(ANSWER_TYPES)}) to text")
    missing = [t for t in ANSWER_TYPES if not isinstance(value.get(t), str)]
    unknown = [t for t in value if t not in ANSWER_TYPES]
    if missing or unknown:
        raise ConfigError(f"{where}: needs text for {', '.join(missing) or '-'}; unknown {', '.join(unknown) or '-'}")
    return dict(value)


def parse_template(raw: Any, where: str) -> Template:
    """Validate one template's YAML content; errors name the file and field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a template must be a mapping")
    known = {"name", "version", "description", "user", "output", "max_new_tokens", "guided_max_new_tokens", "stop",
             "system", "question"}
    extra = sorted(set(raw) - known)
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(extra)}")
    name = _require(raw, "name", str, where)
    user = raw.get("user")
    if isinstance(user, str):
        question = _per_type(raw.get("question"), f"{where}: question")
    else:
        user = _per_type(user, f"{where}: user")
        question = {}
    stop = raw.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ConfigError(f"{where}: field 'stop' must be a list of non-empty strings")
    max_new = _require(raw, "max_new_tokens", int, where)
    if max_new <= 0:
        raise ConfigError(f"{where}: field 'max_new_tokens' must be positive")
    guided_max = raw.get("guided_max_new_tokens")
    if guided_max is not None and (not isinstance(guided_max, int) or isinstance(guided_max, bool) or guided_max <= 0):
        raise ConfigError(f"{where}: field 'guided_max_new_tokens' must be a positive integer")
    return Template(
        name=name, version=_require(raw, "version", int, where), description=str(raw.get("description", "")),
        user=user, output=_require(raw, "output", str, where), max_new_tokens=max_new, stop=tuple(stop),
        system=raw.get("system"), question=question, path=where, guided_max_new_tokens=guided_max,
    )


@functools.lru_cache(maxsize=64)
def load_template(name: str) -> Template:
    """A bundled template by name ("answer", "single", "pairwise") or a path to a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = TEMPLATE_DIR / f"{name}.yaml"
    if not path.is_file():
        bundled = ", ".join(sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml")))
        raise ConfigError(f"template {name!r}: not found (bundled: {bundled})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    return parse_template(raw, str(path))


def _get(template: Template | str) -> Template:
    return template if isinstance(template, Template) else load_template(template)


def format_choices(q: Question) -> str:
    """Multiple-choice options as "A. text" lines ("" for other answer types)."""
    return "\n".join(f"{letter}. {text}" for letter, text in zip(q.choice_letters(), q.choices or []))


def _messages(template: Template, user_text: str) -> Messages:
    messages = [{"role": "system", "content": template.system}] if template.system else []
    return messages + [{"role": "user", "content": user_text}]


def _render_single(template: Template, q: Question) -> str:
    if not isinstance(template.user, dict):
        raise ConfigError(f"template {template.name!r}: 'user' must map answer types to text for one question")
    return template.user[q.answer_type].format(question=q.question, choices=format_choices(q)).strip()


def answer_messages(q: Question, template: Template | str = "answer") -> Messages:
    """Chat messages asking for the answer only (used to sample the training answers)."""
    return _messages(_get(template), _render_single(_get(template), q))


def single_messages(q: Question, template: Template | str = "single") -> Messages:
    """Chat messages asking for an answer and a 0-100 confidence."""
    return _messages(_get(template), _render_single(_get(template), q))


def pairwise_messages(q1: Question, q2: Question, template: Template | str = "pairwise") -> Messages:
    """Chat messages asking which question the model will more likely get right, then both answers."""
    t = _get(template)
    if not isinstance(t.user, str):
        raise ConfigError(f"template {t.name!r}: 'user' must be one text with {{question1}} and {{question2}}")

    def render(q: Question) -> str:
        return t.question[q.answer_type].format(question=q.question, choices=format_choices(q)).strip()

    return _messages(t, t.user.format(question1=render(q1), question2=render(q2)))


def generation_settings(template: Template | str, guided: bool = False) -> dict[str, Any]:
    """`max_new_tokens` and `stop` for a template (pass to `Engine.generate`)."""
    return _get(template).generation(guided)


def template_record(names: tuple[str, ...] | list[str] = ("answer", "single", "pairwise")) -> dict[str, Any]:
    """Name, version and text of every template used, keyed by name: the run folder's templates.json."""
    return {(t := _get(n)).name: t.record() for n in names}
