"""Engines: one interface (`Engine.generate`) over local and remote models. See `get_engine`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaconf.engines.base import Engine
from metaconf.engines.store import CompletionStore
from metaconf.engines.types import Completion, PromptRequest, SamplingParams, TokenLogprob

ENGINE_KINDS = ("embedded", "hf", "vllm", "openai", "scripted")


def get_engine(kind: str = "embedded", *, store: CompletionStore | str | Path | None = None, **kwargs: Any) -> Engine:
    """Build an engine by kind: "embedded", "hf" (model=, adapter=), "vllm" (model=, adapter=,
    tensor_parallel_size=), "openai" (base_url=, model=, api_key_env=), "scripted" (outputs=)."""
    if kind == "embedded":
        from metaconf.engines.hf import HFEngine

        return HFEngine.embedded(store=store, **kwargs)
    if kind == "hf":
        from metaconf.engines.hf import HFEngine

        return HFEngine(store=store, **kwargs)
    if kind == "vllm":
        from metaconf.engines.vllm import VLLMEngine

        return VLLMEngine(store=store, **kwargs)
    if kind == "openai":
        from metaconf.engines.openai import OpenAIEngine

        return OpenAIEngine(store=store, **kwargs)
    if kind == "scripted":
        from metaconf.engines.scripted import ScriptedEngine

        return ScriptedEngine(store=store, **kwargs)
    from metaconf.errors import ConfigError

    raise ConfigError(f"engine: unknown kind {kind!r}; choose one of {', '.join(ENGINE_KINDS)}")


# keywords the study runner sets itself, so `model.options` may not
_RUNNER_SET = {"self", "store", "quiet", "model", "adapter", "base_url", "api_key_env", "shared_prefill"}


def engine_option_names(kind: str) -> list[str]:
    """The keyword options an engine kind accepts from a study's `model.options` (its constructor's keywords,
    less the ones the runner sets): checked before any work, so a typo is a config error, not a traceback."""
    import importlib
    import inspect

    module, cls = {
        "embedded": ("hf", "HFEngine"),
        "hf": ("hf", "HFEngine"),
        "vllm": ("vllm", "VLLMEngine"),
        "openai": ("openai", "OpenAIEngine"),
        "scripted": ("scripted", "ScriptedEngine"),
    }[kind]
    init = getattr(importlib.import_module(f"metaconf.engines.{module}"), cls).__init__
    params = inspect.signature(init).parameters.values()
    return sorted(
        p.name for p in params if p.name not in _RUNNER_SET and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


__all__ = [
    "Completion",
    "CompletionStore",
    "Engine",
    "PromptRequest",
    "SamplingParams",
    "TokenLogprob",
    "get_engine",
    "engine_option_names",
    "ENGINE_KINDS",
]
