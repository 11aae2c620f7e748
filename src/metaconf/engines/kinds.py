"""The engine kinds: a registry (name -> engine class) and, per kind a study can use, its typed model config.

A study's `model:` is one of `EmbeddedModel`, `HFModel`, `VLLMModel`, `OpenAIModel`, picked by its `engine` field
(`ModelConfig`). Each kind validates its own `options` (`HFOptions`, `VLLMOptions`, `OpenAIOptions`), says what it
needs from the study (`adapters`: a PEFT folder or a served name; `runs_locally`: whether its number format is
ours) and builds its engine for the base model or an adapter (`build`), so a study never branches on the kind.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, WrapValidator, field_serializer, model_validator

from metaconf.engines.capabilities import Adapter, AdapterMode
from metaconf.engines.embedded import EMBEDDED_NAME, resolve_model
from metaconf.engines.options import EngineOptions, HFOptions, OpenAIOptions, VLLMOptions
from metaconf.precision import DtypeChoice, choose_dtype
from metaconf.text import redact

if TYPE_CHECKING:
    from metaconf.engines.base import Engine


# -- the registry ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineKind:
    """An engine kind: the class that implements it (imported when first built) and, for a kind with its own
    preset, the classmethod that builds it ("embedded" is HFEngine.embedded)."""

    name: str
    module: str
    cls: str
    constructor: str | None = None

    def engine_class(self) -> type[Engine]:
        return getattr(importlib.import_module(f"metaconf.engines.{self.module}"), self.cls)

    def build(self, **kwargs: Any) -> Engine:
        cls = self.engine_class()
        return getattr(cls, self.constructor)(**kwargs) if self.constructor else cls(**kwargs)


KINDS: dict[str, EngineKind] = {}


def register(kind: EngineKind) -> EngineKind:
    """Add an engine kind (a later one of the same name replaces it)."""
    KINDS[kind.name] = kind
    return kind


for _kind in (
    EngineKind("embedded", "hf", "HFEngine", "embedded"),
    EngineKind("hf", "hf", "HFEngine"),
    EngineKind("vllm", "vllm", "VLLMEngine"),
    EngineKind("openai", "openai", "OpenAIEngine"),
    EngineKind("scripted", "scripted", "ScriptedEngine"),
):
    register(_kind)


# -- the model config, one class per kind --------------------------------------------------------------------------
class ModelBase(BaseModel):
    """Which model answers, and through which engine."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    engine: Literal["embedded", "hf", "vllm", "openai"] = Field(
        "embedded",
        description="embedded (SmolLM2-135M shipped with metaconf), hf (transformers), vllm, or openai "
        "(any OpenAI-compatible server).",
    )
    name: str | None = Field(None, description="Model path or hub id (hf, vllm), or the served model name (openai).")
    base_url: str | None = Field(None, description="openai engine: the server's base URL, e.g. http://host:8000/v1.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai engine: the environment variable holding the API key (never the key)."
    )

    @field_serializer("base_url", when_used="json")
    def _redacted_url(self, value: str | None) -> str | None:
        """Written (config.yaml, metrics.json, --show-config) without user info: `http://***@host/v1`."""
        return None if value is None else redact(value)

    options: EngineOptions = Field(
        default_factory=EngineOptions, description="The engine's own options (each kind's are listed below)."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Number format of a local model (engine, frozen-layer cache and training alike); "
        "'auto': bfloat16 on CPUs with bf16 matrix units (AMX, AVX512-BF16) and on GPUs that support it, float32 "
        "on other CPUs (bf16 is emulated and slow there), float16 on older GPUs. The choice and why is printed and "
        "recorded in RUN/run_info.json.",
    )
    served_adapters: dict[str, str] = Field(
        default_factory=dict,
        description="openai engine with training.backend lora: the name the server serves "
        "each condition's adapter under (vllm serve --lora-modules NAME=RUN/training/CONDITION/adapter); "
        "default: the condition's name.",
    )
    local_path: str | None = Field(
        None,
        description="openai engine with training.backend lora: the served model's local folder (what LoRA "
        "trains on); default: name.",
    )

    adapters: ClassVar[AdapterMode] = "path"  # how this kind's engine takes a trained condition's adapter
    runs_locally: ClassVar[bool] = True  # whether metaconf chooses the number format (model.dtype)

    @field_serializer("options")
    def _given_options(self, options: EngineOptions) -> dict[str, Any]:
        return options.given()  # as written: a config dumps the options it set, not every default

    @model_validator(mode="before")
    @classmethod
    def _no_dtype_option(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("options"), dict) and "dtype" in data["options"]:
            raise ValueError("set the number format with model.dtype, not model.options.dtype")
        return data

    @model_validator(mode="after")
    def _needs(self) -> ModelBase:
        if self.engine != "embedded" and not self.name:
            raise ValueError(f"engine {self.engine!r} needs model.name")
        return self

    @classmethod
    def option_names(cls) -> list[str]:
        """The options of this kind's engine."""
        return sorted(cls.model_fields["options"].annotation.model_fields)

    def unknown_options(self) -> list[str]:
        """Keys of `options` that are not options of this kind's engine (the config check names them)."""
        return list(self.options.model_extra or {})

    def local_weights(self) -> str:
        """The weights folder (or hub id) LoRA training starts from."""
        return resolve_model(self.local_path or self.name)

    def dtype_choice(self) -> DtypeChoice | None:
        """`dtype` resolved for this machine (metaconf.precision), or None where the server decides."""
        return choose_dtype(self.dtype) if self.runs_locally else None

    def label(self) -> str:
        """The model's name in reports."""
        return f"{self.name} ({self.engine})"

    def build(
        self,
        store: Any,
        adapter: Adapter | None = None,
        *,
        quiet: bool = False,
        dtype: str | None = None,
        max_adapter_rank: int | None = None,
    ) -> Engine:
        """This model's engine, for the base model or through `adapter`. `dtype`: the resolved number format (a
        local engine's); `max_adapter_rank`: the largest LoRA rank it will be asked to serve (engines that reserve
        room for adapters use it)."""
        return KINDS[self.engine].build(
            store=store, quiet=quiet, **self._engine_kwargs(adapter, dtype, max_adapter_rank), **self.options.given()
        )

    def _engine_kwargs(self, adapter: Adapter | None, dtype: str | None, max_adapter_rank: int | None) -> dict:
        return {"model": self.name, "adapter": adapter.path if adapter else None, "dtype": dtype}


def _described(name: str) -> str | None:
    """The common field's description, for a kind that narrows the field's type."""
    return ModelBase.model_fields[name].description


class EmbeddedModel(ModelBase):
    """The embedded default model (SmolLM2-135M-Instruct), on the hf engine."""

    engine: Literal["embedded"] = Field("embedded", description=_described("engine"))
    options: HFOptions = Field(default_factory=HFOptions, description=_described("options"))

    def local_weights(self) -> str:
        return resolve_model("embedded")

    def label(self) -> str:
        return f"{EMBEDDED_NAME} (embedded)"

    def _engine_kwargs(self, adapter: Adapter | None, dtype: str | None, max_adapter_rank: int | None) -> dict:
        return {"adapter": adapter.path if adapter else None, "dtype": dtype}


class HFModel(ModelBase):
    """A transformers model (local folder or hub id) on the hf engine."""

    engine: Literal["hf"] = Field("hf", description=_described("engine"))
    options: HFOptions = Field(default_factory=HFOptions, description=_described("options"))


class VLLMModel(ModelBase):
    engine: Literal["vllm"] = "vllm"
    options: VLLMOptions = Field(default_factory=VLLMOptions, description=ModelBase.model_fields["options"].description)

    def _engine_kwargs(self, adapter: Adapter | None, dtype: str | None, max_adapter_rank: int | None) -> dict:
        kwargs = super()._engine_kwargs(adapter, dtype, max_adapter_rank)
        if max_adapter_rank and "max_lora_rank" not in self.options.model_fields_set:
            kwargs["max_lora_rank"] = max_adapter_rank  # the base model and every adapter then share one vllm.LLM
        return kwargs


class OpenAIModel(ModelBase):
    """A model behind an OpenAI-compatible server (vLLM serve, SGLang, hosted APIs)."""

    engine: Literal["openai"] = Field("openai", description=_described("engine"))
    options: OpenAIOptions = Field(default_factory=OpenAIOptions, description=_described("options"))

    adapters: ClassVar[AdapterMode] = "served"
    runs_locally: ClassVar[bool] = False

    @model_validator(mode="after")
    def _needs_url(self) -> OpenAIModel:
        if not self.base_url:
            raise ValueError("engine 'openai' needs model.base_url")
        return self

    def _engine_kwargs(self, adapter: Adapter | None, dtype: str | None, max_adapter_rank: int | None) -> dict:
        model = adapter.served if adapter else self.name
        return {"base_url": self.base_url, "model": model, "api_key_env": self.api_key_env}


MODEL_KINDS: dict[str, type[ModelBase]] = {
    "embedded": EmbeddedModel,
    "hf": HFModel,
    "vllm": VLLMModel,
    "openai": OpenAIModel,
}


def _by_engine(value: Any, handler: Any) -> Any:
    """Validate a model config as the class of its `engine` (default embedded); an unknown engine is reported on
    the `engine` field by the common base."""
    if isinstance(value, ModelBase):
        return value
    if isinstance(value, dict):
        kind = MODEL_KINDS.get(value.get("engine", "embedded"))
        return kind.model_validate(value) if kind else ModelBase.model_validate(value)
    return handler(value)


ModelConfig = Annotated[
    Union[EmbeddedModel, HFModel, VLLMModel, OpenAIModel],  # noqa: UP007 (a union of classes, read by the flags)
    WrapValidator(_by_engine),
]
