"""Offline vLLM generation on GPUs (optional: `pip install metaconf[vllm]`), with an optional LoRA adapter.

Each sample is its own vLLM request (n=1) seeded with `sample_seed(prompt seed, sample index)`, so sample i of a
prompt does not depend on n or on which other samples were asked for (a resumed run gets the same text);
vLLM's prefix caching shares the prompt's prefill between its samples. The translation to and from vLLM's
objects is done by small pure functions (`llm_kwargs`, `sampling_kwargs`, `to_completion`) tested without vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metaconf.engines.base import (
    Completion, Engine, PromptRequest, SamplingParams, TokenLogprob, apply_stop, sample_seed,
)
from metaconf.engines.store import CompletionStore
from metaconf.errors import EngineError

SEED_MASK = 0x7FFFFFFF
LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # the max_lora_rank values every recent vLLM accepts


def import_vllm() -> Any:
    """The vllm module, or one line saying how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(
            f"the vllm engine needs vLLM (and a GPU): pip install 'metaconf[vllm]' ({exc})"
        ) from None
    return vllm


def adapter_rank(adapter: str | Path) -> int:
    """The LoRA rank `r` from a PEFT adapter folder's adapter_config.json."""
    config = Path(adapter) / "adapter_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"{config}: missing; the adapter must be a PEFT LoRA folder") from None
    except (OSError, ValueError) as exc:
        raise EngineError(f"{config}: unreadable ({exc})") from None
    rank = data.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise EngineError(f"{config}: field 'r' (the LoRA rank) must be a positive integer, got {rank!r}")
    return rank


def llm_kwargs(
    model: str,
    adapter: str | Path | None = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    dtype: str = "auto",
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM(...)`; with an adapter, LoRA is enabled with a large enough max rank."""
    kwargs: dict[str, Any] = {
        "model": str(model),
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "dtype": dtype,
        "seed": seed,
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if adapter is not None:
        rank = adapter_rank(adapter)
        fitting = [r for r in LORA_RANKS if r >= rank]
        if not fitting:
            raise EngineError(f"{adapter}: LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]})")
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = fitting[0]
    kwargs.update(extra or {})
    return kwargs


def sampling_kwargs(params: SamplingParams, seed: int, n: int = 1) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams(...)` for `n` samples drawn with `seed`."""
    kwargs: dict[str, Any] = {
        "n": n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
        "seed": seed & SEED_MASK,
    }
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.logprobs is not None:
        kwargs["logprobs"] = params.logprobs
    return kwargs


def to_completion(request_output: Any, params: SamplingParams, index: int = 0) -> Completion:
    """One `Completion` from a vLLM RequestOutput (its `outputs[index]`, a CompletionOutput)."""
    output = request_output.outputs[index]
    text, cut = apply_stop(output.text or "", params.stop)
    token_ids = list(output.token_ids or [])
    logprobs = None
    if params.logprobs is not None and output.logprobs is not None:
        logprobs = [_token_logprob(tid, position, params.logprobs) for tid, position in zip(token_ids, output.logprobs)]
    return Completion(
        text=text,
        logprobs=logprobs,
        finish_reason="length" if output.finish_reason == "length" and not cut else "stop",
        prompt_tokens=len(request_output.prompt_token_ids or []),
        completion_tokens=len(token_ids),
    )


def _token_logprob(token_id: int, position: dict[int, Any], k: int) -> TokenLogprob:
    """vLLM gives, per generated token, {token id: Logprob(logprob, rank, decoded_token)} for the sampled token
    and the top k; `top` keeps the top k by rank."""
    ranked = sorted(position.values(), key=lambda lp: lp.rank if lp.rank is not None else 0)
    chosen = position.get(token_id) or ranked[0]
    top = {str(lp.decoded_token): float(lp.logprob) for lp in ranked if lp.rank is None or lp.rank <= k}
    return TokenLogprob(token=str(chosen.decoded_token), logprob=float(chosen.logprob), top=top)


class VLLMEngine(Engine):
    """Samples with vLLM's offline `LLM` from a local folder or hub name, optionally through a LoRA adapter."""

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        adapter: str | Path | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        dtype: str = "auto",
        batch_size: int = 256,
        llm_options: dict[str, Any] | None = None,
        store: CompletionStore | str | Path | None = None,
        quiet: bool = False,
    ):
        """`llm_options`: any further `vllm.LLM` arguments (enforce_eager, quantization, trust_remote_code...)."""
        super().__init__(store=store, quiet=quiet)
        from metaconf.engines.hf import adapter_fingerprint, model_fingerprint

        if batch_size < 1:
            raise EngineError(f"vllm engine: batch_size must be >= 1, got {batch_size}")
        self.model_name = str(model)
        self.adapter_path = str(adapter) if adapter is not None else None
        self.batch_size = batch_size
        kwargs = llm_kwargs(self.model_name, adapter, tensor_parallel_size, gpu_memory_utilization, max_model_len,
                            dtype, extra=llm_options)
        self._fingerprint = model_fingerprint(model)
        self._adapter_fingerprint = adapter_fingerprint(adapter) if adapter is not None else ""
        self.vllm = import_vllm()
        self.llm = self.vllm.LLM(**kwargs)
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(lora_name="adapter", lora_int_id=1, lora_path=str(adapter))

    @property
    def model_identity(self) -> str:
        return f"vllm:{self.model_name}@{self._fingerprint}" if self._fingerprint else f"vllm:{self.model_name}"

    @property
    def adapter_identity(self) -> str:
        return f"adapter@{self._adapter_fingerprint}" if self.adapter_path else ""  # content, not the path

    def plan_batches(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[int]]:
        size = self.batch_size
        return [list(range(i, min(i + size, len(requests)))) for i in range(0, len(requests), size)]

    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        conversations, sampling = [], []
        for request in requests:
            for sample in request.sample_indices:
                conversations.append(request.messages)
                seed = sample_seed(request.seed, sample)
                sampling.append(self.vllm.SamplingParams(**sampling_kwargs(params, seed)))
        try:
            outputs = self.llm.chat(conversations, sampling, use_tqdm=False, lora_request=self.lora_request)
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than max_model_len
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise EngineError(f"vllm: generation failed for {self.model_name}: {first_line}") from exc
        if len(outputs) != len(conversations):
            raise EngineError(f"vllm: got {len(outputs)} outputs for {len(conversations)} requests")
        results, position = [], 0
        for request in requests:
            row = [to_completion(outputs[position + j], params) for j in range(len(request.sample_indices))]
            position += len(request.sample_indices)
            results.append(row)
        return results
