"""Each engine kind's options (`model.options` in a study config; keyword arguments of the engine), typed."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaconf.bounds import SEED_MAX
from metaconf.engines.openai import GUIDE_FIELD
from metaconf.errors import EngineError, field_location


class EngineOptions(BaseModel):
    """Keyword options of an engine, as `model.options` gives them. Unknown keys are kept here (extra="allow") so
    that the study's config check can name them and list the kind's options in one line."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @classmethod
    def of(cls, engine: str, kwargs: dict[str, Any]) -> Self:
        """An engine constructor's keyword options, validated: a bad value is one line naming the option, an
        unknown option a TypeError (as for any keyword argument)."""
        try:
            options = cls.model_validate(kwargs)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise EngineError(f"{engine} engine: option {field_location(first)}: {first['msg']}") from None
        if options.model_extra:
            raise TypeError(f"{engine} engine: unexpected option(s) {', '.join(options.model_extra)}")
        return options

    def given(self) -> dict[str, Any]:
        """The options the config set, as engine keywords (the engine's own defaults stand for the rest)."""
        return self.model_dump(exclude_unset=True)


class HFOptions(EngineOptions):
    """Options of the hf and embedded engines."""

    device: str | None = Field(None, description="hf: torch device (default: cuda when available, else cpu).")
    max_batch_tokens: int | None = Field(
        None, le=10_000_000, ge=1, description="hf: rows x (prompt + new tokens) per batch, bounding KV-cache memory."
    )
    share_prefix: bool = Field(True, description="hf: prefill the token prefix shared by a batch's prompts once.")
    merge_adapter: bool = Field(True, description="hf: merge a LoRA adapter into the weights (faster sampling).")


class VLLMOptions(EngineOptions):
    """Options of the vllm engine."""

    tensor_parallel_size: int = Field(1, le=64, ge=1, description="vllm: GPUs the model is split over.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm: share of GPU memory vLLM may take.")
    max_model_len: int | None = Field(
        None, le=10_000_000, ge=1, description="vllm: the longest prompt + completion, in tokens."
    )
    batch_size: int = Field(
        256, le=100_000, ge=1, description="vllm: prompts per call (openai: requests per batch, 64)."
    )
    llm_options: dict[str, Any] | None = Field(
        None, description="vllm: further vllm.LLM arguments (enforce_eager, quantization, ...)."
    )
    max_lora_rank: int | None = Field(
        None, le=1024, ge=1, description="vllm: LoRA rank to reserve (default: the study's)."
    )
    seed: int = Field(0, le=SEED_MAX, description="vllm: the engine-wide seed.")
    per_sample_seeds: bool | None = Field(
        None, description="vllm: one seed per sample (default: on, except on vLLM's CPU backend)."
    )


class OpenAIOptions(EngineOptions):
    """Options of the openai engine."""

    concurrency: int = Field(8, le=1024, ge=1, description="openai: requests in flight at once.")
    max_retries: int = Field(6, le=1000, ge=0, description="openai: retries of a failed request.")
    timeout: float = Field(60.0, le=86_400, gt=0, description="openai: seconds to wait for a reply.")
    backoff_base: float = Field(0.5, le=3600, ge=0, description="openai: first wait between retries, in seconds.")
    backoff_max: float = Field(30.0, le=86_400, ge=0, description="openai: longest wait between retries, in seconds.")
    extra_body: dict[str, Any] | None = Field(None, description="openai: fields added to every request body.")
    max_tokens_field: str = Field("max_tokens", description="openai: the request field of the token limit.")
    batch_size: int = Field(
        64, le=100_000, ge=1, description="openai: requests per batch (vllm: prompts per call, 256)."
    )
    guide_field: str | None = Field(
        GUIDE_FIELD, description="openai: where a guide regex goes in the request (null: the server cannot guide)."
    )
    send_seed: bool = Field(True, description="openai: send a per-request seed (false for vLLM serve on CPU).")
