"""A local Hugging Face transformers engine with a hand-written decode loop that does close to the minimal work.

The engine loads the model (and merges a LoRA adapter); the work is in files with one job each: `prefill` (the
prompts into the KV cache, shared prefixes and shared lower layers), `decode` (the sampling loop), `kv_cache` (the
in-place cache layers), `guidance` (the guided-decoding mask) and `weights` (fingerprints of model and adapter).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from metaconf.engines.base import prompt_text
from metaconf.engines.capabilities import Capabilities
from metaconf.engines.decode import Decode
from metaconf.engines.guidance import Guidance
from metaconf.engines.local import LocalEngine
from metaconf.engines.prefill import SharedPrefill, prefill
from metaconf.engines.types import Completion, Messages, PromptRequest, SamplingParams
from metaconf.engines.weights import adapter_fingerprint, lowest_adapter_layer, model_fingerprint
from metaconf.errors import EngineError
from metaconf.precision import announce, resolve_dtype, torch_dtype

__all__ = ["HFEngine", "SharedPrefill", "adapter_fingerprint", "lowest_adapter_layer", "model_fingerprint"]


class HFEngine(LocalEngine):
    """Samples completions from a transformers causal LM (local folder or hub name), optionally with a LoRA."""

    name = "hf"

    def __init__(
        self,
        model: str | Path,
        adapter: str | Path | None = None,
        store: Any = None,
        quiet: bool = False,
        device: str | None = None,
        dtype: Any = None,
        max_batch_tokens: int | None = None,
        share_prefix: bool = True,
        merge_adapter: bool = True,
        shared_prefill: SharedPrefill | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(model, adapter, store, quiet)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype_choice = resolve_dtype(dtype, self.device.type, engine="hf")
        self.dtype = torch_dtype(self.dtype_choice.dtype)
        announce(self.dtype_choice, quiet)
        self.share_prefix = share_prefix
        local = Path(self.model_name).is_dir()
        if not local and Path(self.model_name).exists():
            raise EngineError(f"{self.model_name}: not a model folder")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_name, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise EngineError(f"{self.model_name}: cannot load model or tokenizer ({str(e).splitlines()[0]})") from e
        self._fingerprint = model_fingerprint(self.model_name) or str(
            getattr(self.model.config, "_commit_hash", "") or ""
        )
        if adapter is not None:
            from peft import PeftModel

            peft_model = PeftModel.from_pretrained(self.model, str(adapter))
            self.model = peft_model.merge_and_unload() if merge_adapter else peft_model.get_base_model()
        self.model.to(self.device).eval()
        # A token budget per batch: rows x (prompt + new tokens). Bounds KV-cache (and activation) memory.
        self.max_batch_tokens = max_batch_tokens or batch_tokens(self.model.config, self.dtype, self.device.type)
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self._ids: dict[str, list[int]] = {}
        params = inspect.signature(self.model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self.shared_prefill = shared_prefill
        self.forward_calls = 0  # counted so tests can check that cached requests never reach the model
        self._guidance: Any = None
        self._token_text: dict[int, str] = {}

    @classmethod
    def embedded(cls, store: Any = None, adapter: str | Path | None = None, **kw: Any) -> HFEngine:
        """The embedded default model (SmolLM2-135M-Instruct), converted once and loaded offline."""
        return cls("embedded", adapter=adapter, store=store, **kw)

    # -- identity ----------------------------------------------------------------------------------------
    @property
    def model_identity(self) -> str:
        """Name, content fingerprint and (unless fp32, whose keys predate it) dtype: bf16 and fp32 samples differ,
        so they never share cache entries."""
        name = f"{self.model_name}@{self._fingerprint}" if self._fingerprint else self.model_name
        return name if self.dtype_choice.dtype == "float32" else f"{name}#{self.dtype_choice.dtype}"

    # -- prompts -----------------------------------------------------------------------------------------
    def prompt_ids(self, messages: Messages) -> list[int]:
        """The chat-templated token ids of a prompt (with the assistant turn opened), memoised."""
        key = prompt_text(messages)
        ids = self._ids.get(key)
        if ids is None:
            if getattr(self.tokenizer, "chat_template", None):
                text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            else:  # a base model without a template: plain role-tagged turns
                text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise EngineError("hf: a prompt tokenized to zero tokens")
            self._ids[key] = ids
        return ids

    def plan_batches(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[int]]:
        """Prompts sorted by token length, grouped so rows x (prompt + new tokens) stays within the budget."""
        lengths = [len(self.prompt_ids(r.messages)) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (lengths[i], i))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            rows = (len(current) + 1) * params.n
            if current and rows * (lengths[i] + params.max_new_tokens) > self.max_batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    # -- generation --------------------------------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            guide=True,
            shared_prefill=True,
            local_weights=self.model_name,
            dtype=self.dtype_choice.dtype,
            per_sample_seeds=True,
            adapters="path",
        )

    def forward(self, **kw: Any):
        """One counted forward pass that keeps only the last position's logits (`cache=` under either name)."""
        self.forward_calls += 1
        kw[self.cache_kw] = kw.pop("cache")
        return self.model(use_cache=True, logits_to_keep=1, **kw)

    def prefill(self, prompts: list[list[int]], cache: Any) -> tuple[Any, Any]:
        """The prompts into `cache`: last-position logits and the attention mask (metaconf.engines.prefill)."""
        return prefill(self, prompts, cache)

    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        import torch

        from metaconf.engines import kv_cache

        with torch.inference_mode():
            decode = Decode(self, requests, params)
            return decode.run(kv_cache.new_cache(self.model.config, reserve=params.max_new_tokens))

    def lowest_adapter_layer(self) -> int:
        return lowest_adapter_layer(self.adapter_path) if self.adapter_path else 0

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token_text(self, tid: int) -> str:
        """One token's text, memoised (logprob records name every top alternative)."""
        text = self._token_text.get(tid)
        if text is None:
            text = self._token_text[tid] = self.tokenizer.decode([tid])
        return text

    def guides(self) -> Guidance:
        """The engine's llguidance state (built on the first guided batch)."""
        if self._guidance is None:
            self._guidance = Guidance(
                self.tokenizer, self.model.get_output_embeddings().weight.shape[0], sorted(self.eos_ids)
            )
        return self._guidance


# the most tokens per batch on a CPU (a GPU takes 1 << 18): 32768 held 0.6 GB more in the demo's baselines for a
# few percent of speed (BENCHMARKS.md, "Memory")
CPU_BATCH_TOKENS = 1 << 14
CPU_KV_BYTES = 3 << 29  # and at most this much KV cache (1.5 GiB): fewer tokens per batch for a larger model


def kv_bytes_per_token(config: Any, dtype: Any) -> int:
    """Bytes of KV cache one token takes in `config`'s model: layers x (keys + values) x KV heads x head size."""
    import torch

    heads = getattr(config, "num_attention_heads", 1) or 1
    head_dim = getattr(config, "head_dim", None) or getattr(config, "hidden_size", 64) // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    layers = getattr(config, "num_hidden_layers", 1) or 1
    return int(layers * 2 * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size())


def batch_tokens(config: Any, dtype: Any, device_type: str) -> int:
    """The default token budget per batch: on a CPU the KV cache of a batch stays within CPU_KV_BYTES (the budget
    of 16384 tokens is ~0.37 GB for the 135M demo model in bf16 but would be ~3 GB for a 1.7B model)."""
    if device_type == "cuda":
        return 1 << 18
    return max(1024, min(CPU_BATCH_TOKENS, CPU_KV_BYTES // kv_bytes_per_token(config, dtype)))


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
