"""Engines: one interface (`Engine.generate`) over local and remote models. See `get_engine`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaconf.engines.base import Completion, Engine, PromptRequest, SamplingParams, TokenLogprob
from metaconf.engines.store import CompletionStore

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


__all__ = [
    "Completion", "CompletionStore", "Engine", "PromptRequest", "SamplingParams", "TokenLogprob",
    "get_engine", "ENGINE_KINDS",
]
