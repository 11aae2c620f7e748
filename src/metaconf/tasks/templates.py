"""Prompt templates as data: YAML files in `tasks/templates/`, rendered with plain `str.format` fields.

Each template puts its fixed instructions first and the question(s) last, so all prompts of one task share a
prefix the engine can reuse, and asks for a direct answer (no chain of thought) to keep generation short.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from metaconf.data.schema import ANSWER_TYPES, Question
from metaconf.errors import ConfigError, validation_error
from metaconf.names import name_problem

TEMPLATE_DIR = Path(__file__).parent / "templates"
Messages = list[dict[str, str]]


def _per_type(value: Any) -> dict[str, str]:
    """One text per answer type, no more and no fewer."""
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "answer_types", "must map answer types ({types}) to text", {"types": ", ".join(ANSWER_TYPES)}
        )
    missing = [t for t in ANSWER_TYPES if not isinstance(value.get(t), str)]
    unknown = [str(t) for t in value if t not in ANSWER_TYPES]
    if missing or unknown:
        raise PydanticCustomError(
            "answer_types",
            "needs text for {missing}; unknown {unknown}",
            {"missing": ", ".join(missing) or "-", "unknown": ", ".join(unknown) or "-"},
        )
    return dict(value)


class Template(BaseModel):
    """One prompt template, as its YAML file holds it (tasks/templates/*.yaml; docs/tasks.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr = Field(description="The template's name (a run's templates.json is keyed by it).")
    version: StrictInt = Field(description="Raised whenever the text changes, so a run says which text it used.")
    description: StrictStr = Field("", description="What the template asks for, in a sentence.")
    system: StrictStr | None = Field(None, description="The system message; none when null.")
    user: dict[str, StrictStr] | StrictStr = Field(
        description=(
            "The user message: one text per answer type (mc, numeric, open, boolean) with {question} and {choices}; "
            "for the pairwise task one text with {question1} and {question2}."
        )
    )
    question: dict[str, StrictStr] = Field(
        default_factory=dict,
        validate_default=True,
        description=(
            "Pairwise task (`user` is one text): how each question is shown inside it, one text per answer type."
        ),
    )
    output: StrictStr = Field(description="The reply the model is trained to give (and the parser reads).")
    max_new_tokens: StrictInt = Field(gt=0, description="Token limit of a reply under free sampling.")
    # the guide bounds every field so the reply always fits (see tasks/guides.py); free runs never use it
    guided_max_new_tokens: StrictInt | None = Field(
        None, gt=0, description="Token limit under guided decoding; null: max_new_tokens."
    )
    stop: tuple[Annotated[StrictStr, StringConstraints(min_length=1)], ...] = Field(
        (), description="Strings that end a reply (not included in it)."
    )
    _path: str = PrivateAttr("")

    @field_validator("user", mode="before")
    @classmethod
    def _user_per_type(cls, value: Any) -> Any:
        return value if isinstance(value, str) else _per_type(value)

    @field_validator("question", mode="before")
    @classmethod
    def _question_per_type(cls, value: Any, info: ValidationInfo) -> Any:
        return _per_type(value) if isinstance(info.data.get("user"), str) else {}

    @field_validator("stop", mode="before")
    @classmethod
    def _no_stop(cls, value: Any) -> Any:
        return () if value is None else value

    @property
    def path(self) -> str:
        """The file the template was read from ("" when built in code)."""
        return self._path

    def token_limit(self, guided: bool = False) -> int:
        return (self.guided_max_new_tokens or self.max_new_tokens) if guided else self.max_new_tokens

    def generation(self, guided: bool = False) -> dict[str, Any]:
        """The generation settings this template needs: `max_new_tokens` and `stop`."""
        return {"max_new_tokens": self.token_limit(guided), "stop": list(self.stop)}

    def record(self) -> dict[str, Any]:
        """Name, version and full text: what `templates.json` stores so a run says exactly what it asked."""
        return {**self.model_dump(mode="json"), "question": self.question or None}


def parse_template(raw: Any, where: str) -> Template:
    """Validate one template's YAML content; errors name the file and field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a template must be a mapping")
    unknown = sorted(str(key) for key in set(raw) - set(Template.model_fields))
    if unknown:  # named first: a misspelt field would otherwise show as the required one it was meant to be
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        template = Template.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(where, exc) from None
    template._path = where
    return template


@functools.lru_cache(maxsize=64)
def load_template(name: str) -> Template:
    """A bundled template by name ("answer", "single", "pairwise") or a path to a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        problem = name_problem(name)
        if problem:
            raise ConfigError(f"template {name[:80]!r}: not a bundled template's name ({problem})")
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
