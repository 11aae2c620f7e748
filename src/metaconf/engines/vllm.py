"""Offline vLLM generation (optional: `pip install metaconf[vllm]` on GPUs, `make vllm` for the CPU build), with
LoRA adapters and guided decoding.

Where the backend supports per-request seeds (GPUs), each sample is its own vLLM request (n=1) seeded with
`sample_seed(prompt seed, sample index)`, so sample i of a prompt does not depend on n or on which other samples
were asked for (a resumed run gets the same text); vLLM's prefix caching shares the prompt's prefill between its
samples. vLLM's CPU backend dies on a per-request seed (`CPU Generator does not use offset`): there the engine
sends one request per prompt with `n` samples and relies on the engine-wide seed, and says so in `determinism`.

Engines on the same model and settings share one `vllm.LLM` (loading it is the slow part): the base model and
every adapter of a study run on one instance, each adapter as its own `LoRARequest`. The translation to and from
vLLM's objects is done by small pure functions (`llm_kwargs`, `sampling_kwargs`, `to_completion`) tested
without vLLM.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from metaconf.engines.base import SEEDED, apply_stop, determinism_record, sample_seed
from metaconf.engines.capabilities import Capabilities
from metaconf.engines.local import LocalEngine
from metaconf.engines.options import VLLMOptions
from metaconf.engines.store import CompletionStore
from metaconf.engines.types import Completion, PromptRequest, SamplingParams, TokenLogprob
from metaconf.engines.weights import model_fingerprint
from metaconf.errors import EngineError
from metaconf.precision import cpu_bf16_unit, cpu_flags, parse_cpu_flags

SEED_MASK = 0x7FFFFFFF
LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # the max_lora_rank values every recent vLLM accepts
CPU_KV_CACHE_GB = 1  # the CPU backend's KV cache when VLLM_CPU_KVCACHE_SPACE is unset (its default takes most RAM)

# (vllm module, frozen LLM kwargs) -> LLM; and each adapter folder's LoRA id on that LLM
_LLMS: list[tuple[Any, str, Any]] = []
_LORA_IDS: dict[str, int] = {}


def import_vllm() -> Any:
    """The vllm module, or one line saying how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(
            f"the vllm engine needs vLLM: pip install 'metaconf[vllm]' on a GPU machine, or `make vllm` for the "
            f"CPU build in its own environment (see docs/engines.md) ({exc})"
        ) from None
    return vllm


def on_cpu(vllm: Any) -> bool:
    """Whether vLLM runs on its CPU backend (which cannot seed single requests)."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(getattr(current_platform, "is_cpu", lambda: False)())


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 natively (AMX / AVX512-BF16); on AVX2 alone bf16 is emulated and slow. The
    same test as metaconf.precision's `auto` (this machine's flags, or those in `cpuinfo` text)."""
    flags = cpu_flags() if cpuinfo is None else parse_cpu_flags(cpuinfo)
    return cpu_bf16_unit(flags) is not None


def cpu_settings(kwargs: dict[str, Any], bf16: bool) -> dict[str, Any]:
    """`vllm.LLM` arguments for the CPU backend: fp32 where bf16 is emulated (vLLM would downcast), and the model
    in this process (no worker process to start and feed) for a single-socket run. Explicit settings win."""
    kwargs = dict(kwargs)
    if kwargs.get("dtype", "auto") == "auto" and not bf16:
        kwargs["dtype"] = "float32"
    if kwargs.get("tensor_parallel_size", 1) == 1:
        kwargs.setdefault("distributed_executor_backend", "uni")
    return kwargs


# Environment defaults of vLLM's CPU backend that fit a shared machine: a small KV cache instead of most of the RAM,
# no core held back from the model, and the engine core in this process (no spawn, so no `__main__` guard needed).
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": str(CPU_KV_CACHE_GB),
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


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


LLM_DEFAULTS: dict[str, Any] = {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "dtype": "auto", "seed": 0}


def llm_kwargs(
    model: str,
    adapter: str | Path | None = None,
    *,
    extra: dict[str, Any] | None = None,
    max_lora_rank: int | None = None,
    max_model_len: int | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM(...)`: `settings` change LLM_DEFAULTS, `extra` adds any other. LoRA is enabled
    with an adapter or a `max_lora_rank` (a study asks for its largest rank up front, so the base model and all
    adapters share one LLM), rounded up to a rank vLLM accepts."""
    unknown = sorted(set(settings) - set(LLM_DEFAULTS))
    if unknown:
        raise TypeError(f"llm_kwargs: unexpected {', '.join(unknown)}")
    kwargs: dict[str, Any] = {"model": str(model), **LLM_DEFAULTS, **settings}
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    ranks = ([adapter_rank(adapter)] if adapter is not None else []) + ([max_lora_rank] if max_lora_rank else [])
    if ranks:
        fitting = [r for r in LORA_RANKS if r >= max(ranks)]
        if not fitting:
            raise EngineError(
                f"{adapter or 'max_lora_rank'}: LoRA rank {max(ranks)} is above vLLM's largest ({LORA_RANKS[-1]})"
            )
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = fitting[0]
    kwargs.update(extra or {})
    return kwargs


def sampling_kwargs(
    params: SamplingParams, seed: int | None, n: int = 1, guide: str | None = None, structured: Any = None
) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams(...)` for `n` samples drawn with `seed` (None: the engine's
    own random state); `guide` is a regex the completion must match, passed as `structured(regex=guide)`."""
    kwargs: dict[str, Any] = {
        "n": n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_new_tokens,
    }
    if seed is not None:
        kwargs["seed"] = seed & SEED_MASK
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.logprobs is not None:
        kwargs["logprobs"] = params.logprobs
    if guide is not None:
        kwargs["structured_outputs"] = structured(regex=guide)
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


def shared_llm(vllm: Any, kwargs: dict[str, Any]) -> Any:
    """One `vllm.LLM` per (module, settings) in this process: loading a model takes minutes, adapters do not."""
    key = json.dumps(kwargs, sort_keys=True, default=str)
    for module, known, llm in _LLMS:
        if module is vllm and known == key:
            return llm
    llm = vllm.LLM(**kwargs)
    _LLMS.append((vllm, key, llm))
    return llm


def lora_id(adapter: str) -> int:
    """A stable positive id per adapter folder (vLLM caches loaded adapters by id)."""
    return _LORA_IDS.setdefault(adapter, len(_LORA_IDS) + 1)


class VLLMEngine(LocalEngine):
    """Samples with vLLM's offline `LLM` from a local folder or hub name, optionally through a LoRA adapter."""

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        adapter: str | Path | None = None,
        *,
        dtype: str = "auto",
        store: CompletionStore | str | Path | None = None,
        quiet: bool = False,
        **options: Any,
    ):
        """`options`: those of `VLLMOptions` (tensor_parallel_size, batch_size, llm_options: any further `vllm.LLM`
        arguments, seed: the engine-wide seed, per_sample_seeds: None detects, off on vLLM's CPU backend...)."""
        o = VLLMOptions.of("vllm", options)
        super().__init__(model, adapter, store, quiet)
        self.batch_size = o.batch_size
        self.seed = o.seed
        kwargs = llm_kwargs(
            self.model_name,
            adapter,
            extra=o.llm_options,
            max_lora_rank=o.max_lora_rank,
            max_model_len=o.max_model_len,
            tensor_parallel_size=o.tensor_parallel_size,
            gpu_memory_utilization=o.gpu_memory_utilization,
            dtype=dtype,
            seed=o.seed,
        )
        self._fingerprint = model_fingerprint(self.model_name)
        self.vllm = import_vllm()
        cpu = on_cpu(self.vllm)
        if cpu:
            for name, value in CPU_ENV.items():
                os.environ.setdefault(name, value)
            kwargs = cpu_settings(kwargs, cpu_has_bf16())
        self.per_sample_seeds = (not cpu) if o.per_sample_seeds is None else o.per_sample_seeds
        self.dtype = kwargs["dtype"]
        self.llm = shared_llm(self.vllm, kwargs)
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest(
                lora_name=Path(adapter).parent.name or "adapter",
                lora_int_id=lora_id(str(adapter)),
                lora_path=str(adapter),
            )
        self._structured = None

    @property
    def model_identity(self) -> str:
        return f"vllm:{self.model_name}@{self._fingerprint}" if self._fingerprint else f"vllm:{self.model_name}"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            guide=True,
            local_weights=self.model_name,
            dtype=None if self.dtype == "auto" else self.dtype,
            per_sample_seeds=self.per_sample_seeds,
            adapters="path",
        )

    @property
    def determinism(self) -> dict[str, Any]:
        if self.per_sample_seeds:
            return determinism_record("vllm", True, SEEDED, engine_seed=self.seed)
        repeatable = (
            "one engine-wide seed (this vLLM backend cannot seed single requests, e.g. the CPU build): a fresh "
            "process asking for the same prompts in the same order repeats; a resumed run or another n draws "
            "different samples"
        )
        return determinism_record("vllm", False, repeatable, engine_seed=self.seed)

    def _structured_params(self) -> Any:
        if self._structured is None:
            from vllm.sampling_params import StructuredOutputsParams

            self._structured = StructuredOutputsParams
        return self._structured

    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        structured = self._structured_params() if any(r.guide is not None for r in requests) else None
        conversations, sampling, counts = [], [], []
        for request in requests:
            if self.per_sample_seeds:  # one request per sample, each with its own seed
                for sample in request.sample_indices:
                    conversations.append(request.messages)
                    sampling.append(
                        self.vllm.SamplingParams(
                            **sampling_kwargs(
                                params, sample_seed(request.seed, sample), guide=request.guide, structured=structured
                            )
                        )
                    )
                counts.append([1] * len(request.sample_indices))
            else:  # one request with n samples, drawn from the engine-wide random state
                conversations.append(request.messages)
                sampling.append(
                    self.vllm.SamplingParams(
                        **sampling_kwargs(
                            params, None, n=len(request.sample_indices), guide=request.guide, structured=structured
                        )
                    )
                )
                counts.append([len(request.sample_indices)])
        try:
            outputs = self.llm.chat(conversations, sampling, use_tqdm=False, lora_request=self.lora_request)
        except (ValueError, RuntimeError) as exc:  # e.g. a prompt longer than max_model_len
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise EngineError(f"vllm: generation failed for {self.model_name}: {first_line}") from exc
        if len(outputs) != len(conversations):
            raise EngineError(f"vllm: got {len(outputs)} outputs for {len(conversations)} requests")
        results, position = [], 0
        for per_request in counts:
            row = []
            for n in per_request:
                row += [to_completion(outputs[position], params, index=i) for i in range(n)]
                position += 1
            results.append(row)
        return results
