"""Engines: one interface (`Engine.generate`) over local and remote models. See `get_engine` and `engines.kinds`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metaconf.engines.base import Engine
from metaconf.engines.capabilities import Adapter, Capabilities
from metaconf.engines.kinds import KINDS, EngineKind, register
from metaconf.engines.store import CompletionStore
from metaconf.engines.types import Completion, PromptRequest, SamplingParams, TokenLogprob

ENGINE_KINDS = tuple(KINDS)


def get_engine(kind: str = "embedded", *, store: CompletionStore | str | Path | None = None, **kwargs: Any) -> Engine:
    """Build an engine by kind: "embedded", "hf" (model=, adapter=), "vllm" (model=, adapter=,
    tensor_parallel_size=), "openai" (base_url=, model=, api_key_env=), "scripted" (outputs=)."""
    if kind not in KINDS:
        from metaconf.errors import ConfigError

        raise ConfigError(f"engine: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind].build(store=store, **kwargs)


def engine_option_names(kind: str) -> list[str]:
    """The keyword options an engine kind a study can use accepts from its `model.options` (its options model's
    fields): checked before any work, so a typo is a config error, not a traceback."""
    from metaconf.engines.kinds import MODEL_KINDS

    return MODEL_KINDS[kind].option_names()


__all__ = [
    "Adapter",
    "Capabilities",
    "Completion",
    "CompletionStore",
    "Engine",
    "EngineKind",
    "PromptRequest",
    "SamplingParams",
    "TokenLogprob",
    "get_engine",
    "engine_option_names",
    "register",
    "ENGINE_KINDS",
]
