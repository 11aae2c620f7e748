"""A local Hugging Face transformers engine with a hand-written decode loop that does close to the minimal work.

Per batch: the token prefix shared by every prompt (system prompt, template header) is prefilled once; each
distinct prompt's remaining tokens are prefilled once (left-padded between prefix and suffix, exact positions);
the KV cache is then expanded across the prompt's samples; only the last position's logits are computed; rows
that finished are dropped from the batch and the loop stops when every row has. Each sample draws its random
numbers from its own generator seeded by `sample_seed`, so its text does not depend on n or on its batch.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path
from typing import Any

from metaconf.engines.base import Engine, apply_stop, prompt_text, sample_seed, stable_hash
from metaconf.engines.embedded import resolve_model
from metaconf.engines.types import Completion, Messages, PromptRequest, SamplingParams, TokenLogprob
from metaconf.errors import DataError, EngineError
from metaconf.io import file_sha256, read_json
from metaconf.precision import DTYPES, DtypeChoice, announce, choose_dtype, torch_dtype

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate prefill


def model_fingerprint(model: str | Path) -> str:
    """A local folder: hash of config.json plus each weight file's name, size and mtime; a hub name: ""."""
    path = Path(model)
    if not path.is_dir():
        return ""
    h = hashlib.sha256()
    config = path / "config.json"
    if config.is_file():
        h.update(config.read_bytes())
    for f in sorted(path.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".gguf"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def adapter_fingerprint(adapter: str | Path) -> str:
    """Hash of a PEFT adapter folder's content: its weights file and its config, normalised (target_modules
    sorted, the base model's path left out), so a copied or retrained identical adapter keeps its identity."""
    import json

    path = Path(adapter)
    weights = [path / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (path / n).is_file()]
    if not weights:
        raise EngineError(f"{path}: no adapter_model.safetensors or adapter_model.bin in the adapter folder")
    h = hashlib.sha256(file_sha256(weights[0]).encode())
    if (path / "adapter_config.json").is_file():
        try:
            config = read_json(path / "adapter_config.json")
        except DataError as exc:
            raise EngineError(str(exc)) from None
        if isinstance(config, dict):
            config.pop("base_model_name_or_path", None)
            if isinstance(config.get("target_modules"), list):
                config["target_modules"] = sorted(map(str, config["target_modules"]))
        h.update(json.dumps(config, sort_keys=True).encode())
    return h.hexdigest()[:16]


class HFEngine(Engine):
    """Samples completions from a transformers causal LM (local folder or hub name), optionally with a LoRA."""

    name = "hf"
    supports_guide = True

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
        super().__init__(store=store, quiet=quiet)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = resolve_model(model)
        self.adapter_path = str(adapter) if adapter is not None else None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype_choice = _resolve_dtype(dtype, self.device)
        self.dtype = torch_dtype(self.dtype_choice.dtype)
        announce(self.dtype_choice, quiet)
        # A token budget per batch: rows x (prompt + new tokens). Bounds KV-cache memory.
        self.max_batch_tokens = max_batch_tokens or (1 << 18 if self.device.type == "cuda" else 1 << 15)
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
        self._adapter_fingerprint = ""
        if adapter is not None:
            from peft import PeftModel

            self._adapter_fingerprint = adapter_fingerprint(adapter)
            peft_model = PeftModel.from_pretrained(self.model, str(adapter))
            self.model = peft_model.merge_and_unload() if merge_adapter else peft_model.get_base_model()
        self.model.to(self.device).eval()
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self._ids: dict[str, list[int]] = {}
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x
        self.shared_prefill = shared_prefill
        self.forward_calls = 0  # counted so tests can check that cached requests never reach the model
        self._guidance: Guidance | None = None
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

    @property
    def adapter_identity(self) -> str:
        return f"adapter@{self._adapter_fingerprint}" if self.adapter_path else ""  # content, not the path

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
    def _forward(self, **kw: Any):
        self.forward_calls += 1
        kw[self._cache_kw] = kw.pop("cache")
        return self.model(use_cache=True, logits_to_keep=1, **kw)

    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        import torch

        with torch.inference_mode():
            return self._generate(requests, params)

    def _generate(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        import torch

        dev = self.device
        prompts = [self.prompt_ids(r.messages) for r in requests]
        cache = _new_cache(self.model.config, reserve=params.max_new_tokens)
        logits, mask = self._prefill(prompts, cache)

        # One row per wanted sample; the prompt's cache is shared by copying it into each of its rows.
        row_prompt = [i for i, r in enumerate(requests) for _ in r.sample_indices]
        row_seeds = [sample_seed(r.seed, s) for r in requests for s in r.sample_indices]
        select = torch.tensor(row_prompt, device=dev)
        if any(len(r.sample_indices) != 1 for r in requests):
            cache.batch_select_indices(select)
        logits, mask = logits[select], mask[select]
        next_pos = torch.tensor([len(prompts[i]) for i in row_prompt], device=dev)
        uniforms = None
        if not params.greedy:
            uniforms = torch.stack(
                [
                    torch.rand(params.max_new_tokens, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                    for s in row_seeds
                ]
            ).to(dev)

        n_rows = len(row_prompt)
        row_guides = [r.guide for r in requests for _ in r.sample_indices]
        guided = self._guides().matchers(row_guides) if any(g is not None for g in row_guides) else None
        tokens: list[list[int]] = [[] for _ in range(n_rows)]
        lps: list[list[TokenLogprob]] = [[] for _ in range(n_rows)]
        finish = ["length"] * n_rows
        texts: list[str | None] = [None] * n_rows
        done = [False] * n_rows
        active = list(range(n_rows))  # row ids of the cache's batch entries, in order
        for step in range(params.max_new_tokens):
            u = uniforms[active, step] if uniforms is not None else None
            if guided is not None:
                logits = guided.mask(logits, [row if not done[row] else None for row in active])
            chosen, logprob_rows = _sample(logits, params, u)
            chosen_list = chosen.tolist()
            if params.logprobs is not None:
                going = [(j, row) for j, row in enumerate(active) if not done[row]]
                self._record_logprobs(logprob_rows, chosen, params.logprobs, going, lps)
            keep = []  # positions in `active` of the rows still going
            for j, row in enumerate(active):
                if done[row]:  # finished earlier but kept in the batch (cheaper than a copy of the cache)
                    continue
                tok = chosen_list[j]
                tokens[row].append(tok)
                if tok in self.eos_ids:
                    finish[row], done[row] = "stop", True
                    continue
                if guided is not None and guided.consume(row, tok):
                    finish[row], done[row] = "stop", True  # the guide is complete and can take nothing more
                    continue
                if params.stop:
                    text, cut = apply_stop(self._decode(tokens[row]), params.stop)
                    if cut:
                        finish[row], texts[row], done[row] = "stop", text, True
                        continue
                keep.append(j)
            if not keep or step == params.max_new_tokens - 1:
                break
            # Dropping finished rows costs one copy of the cache; keeping them costs their forward passes.
            if len(keep) < len(active) and (len(active) - len(keep)) * (params.max_new_tokens - step) >= len(active):
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                mask, next_pos, chosen = mask[sel], next_pos[sel], chosen[sel]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = self._forward(
                input_ids=chosen.view(-1, 1),
                attention_mask=mask,
                position_ids=next_pos.view(-1, 1),
                cache=cache,
            )
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1

        results: list[list[Completion]] = [[] for _ in requests]
        for row, p in enumerate(row_prompt):
            toks = tokens[row]
            text = texts[row]
            if text is None:
                text = self._decode([t for t in toks if t not in self.eos_ids])
                if params.stop:
                    text, _ = apply_stop(text, params.stop)
            results[p].append(
                Completion(
                    text=text,
                    logprobs=lps[row] if params.logprobs is not None else None,
                    finish_reason=finish[row],
                    prompt_tokens=len(prompts[p]),
                    completion_tokens=len(toks),
                )
            )
        return results

    def _prefill(self, prompts: list[list[int]], cache: Any) -> tuple[Any, Any]:
        """Fill `cache` with the prompts; returns the last position's logits and the attention mask.

        The prefix shared by every prompt is prefilled once; the suffixes are left-padded to a common width and
        placed after it with exact position ids. With a `SharedPrefill`, the lower layers (identical for the base
        model and for adapters that only touch upper layers) are computed once per batch across engines.
        """
        import torch

        shared = self.shared_prefill
        key = shared.key(self.model_identity, prompts) if shared is not None else None
        if shared is not None and self.adapter_path is not None and self._lowest_adapter_layer() >= shared.split:
            entry = shared.entries.get(key)
            if entry is not None and _has_layer_stack(self.model):
                shared.hits += 1
                return self._prefill_upper(entry, shared.split, cache), entry["mask"]
        capture = shared is not None and shared.capturing and self.adapter_path is None and _has_layer_stack(self.model)
        captured: list[Any] = []
        hook = None
        if capture:
            layer = self.model.get_decoder().layers[shared.split]
            hook = layer.register_forward_pre_hook(
                lambda _m, args, kwargs: captured.append((args[0] if args else kwargs["hidden_states"]).clone()),
                with_kwargs=True,
            )
        try:
            dev = self.device
            prefix = _common_prefix(prompts) if self.share_prefix and len(prompts) > 1 else 0
            if prefix < MIN_SHARED_PREFIX:
                prefix = 0
            if prefix:
                self._forward(input_ids=torch.tensor([prompts[0][:prefix]], device=dev), cache=cache)
                cache.batch_repeat_interleave(len(prompts))
            suffixes = [p[prefix:] for p in prompts]
            width = max(len(s) for s in suffixes)
            ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(prompts), prefix + width), dtype=torch.long)
            mask[:, :prefix] = 1
            for i, s in enumerate(suffixes):
                ids[i, width - len(s) :] = torch.tensor(s)
                mask[i, prefix + width - len(s) :] = 1
            positions = (prefix + mask[:, prefix:].cumsum(-1) - 1).clamp(min=0)
            ids, mask, positions = ids.to(dev), mask.to(dev), positions.to(dev)
            out = self._forward(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
        finally:
            if hook is not None:
                hook.remove()
        if capture:
            hidden = captured[-1]
            if prefix:
                hidden = torch.cat([captured[0].expand(len(prompts), -1, -1), hidden], dim=1)
                positions = torch.cat([torch.arange(prefix, device=dev).expand(len(prompts), -1), positions], 1)
            shared.entries[key] = {
                "hidden": hidden,
                "mask": mask,
                "positions": positions,
                "kv": [(cache.layers[i].keys.clone(), cache.layers[i].values.clone()) for i in range(shared.split)],
            }
        return out.logits[:, -1, :], mask

    def _prefill_upper(self, entry: dict[str, Any], split: int, cache: Any) -> Any:
        """Run only the layers from `split` up on stored lower-layer hidden states; copy the stored lower KV."""
        from transformers.masking_utils import create_causal_mask

        decoder = self.model.get_decoder()
        hidden, positions = entry["hidden"], entry["positions"]
        self.forward_calls += 1
        causal_mask = create_causal_mask(
            config=self.model.config,
            inputs_embeds=hidden,
            attention_mask=entry["mask"],
            cache=None,
            position_ids=positions,
        )
        position_embeddings = decoder.rotary_emb(hidden, position_ids=positions)
        for layer in decoder.layers[split:]:
            out = layer(
                hidden,
                attention_mask=causal_mask,
                position_embeddings=position_embeddings,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kw: cache},
            )
            hidden = out[0] if isinstance(out, tuple) else out
        for i, (keys, values) in enumerate(entry["kv"]):
            cache.layers[i].update(keys, values, i)
        return self.model.lm_head(decoder.norm(hidden[:, -1:, :]))[:, -1, :]

    def _lowest_adapter_layer(self) -> int:
        return lowest_adapter_layer(self.adapter_path) if self.adapter_path else 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _record_logprobs(self, logprob_rows, chosen, k: int, going: list[tuple[int, int]], lps) -> None:
        """Append a TokenLogprob to each going row (batch position j, row id)."""
        import torch

        picked = logprob_rows.gather(1, chosen.view(-1, 1)).squeeze(1).tolist()
        if k > 0:
            top_v, top_i = torch.topk(logprob_rows, k, dim=-1)
            top_v, top_i = top_v.tolist(), top_i.tolist()
        for j, row in going:
            top: dict[str, float] = {}
            if k > 0:
                for tid, v in zip(top_i[j], top_v[j]):
                    if v == float("-inf"):  # a token the guide forbids: not an alternative
                        continue
                    s = self._decode_token(tid)
                    top[s] = max(v, top.get(s, float("-inf")))
            lps[row].append(TokenLogprob(token=self._decode_token(int(chosen[j])), logprob=picked[j], top=top))

    def _decode_token(self, tid: int) -> str:
        text = self._token_text.get(tid)
        if text is None:
            text = self._token_text[tid] = self.tokenizer.decode([tid])
        return text

    def _guides(self) -> Guidance:
        if self._guidance is None:
            self._guidance = Guidance(
                self.tokenizer, self.model.get_output_embeddings().weight.shape[0], sorted(self.eos_ids)
            )
        return self._guidance


class Guidance:
    """llguidance matchers for guided rows: one compiled grammar per distinct guide, one matcher per row.

    Why llguidance (docs/engines.md): a small self-contained wheel (no torch pin, so it never fights the installed
    torch), regexes compile in well under a millisecond, and masks are computed on native threads at about 50
    microseconds per row and step, so the mask costs little next to a forward pass even on CPU.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: list[int]):
        import llguidance
        import llguidance.hf

        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_ids)
        except ValueError as e:
            raise EngineError(f"hf: guided decoding needs a fast tokenizer ({e})") from None
        self.vocab_size = vocab_size
        self.executor = llguidance.LLExecutor()
        self.grammars: dict[str, Any] = {}  # guide -> a fresh matcher to copy

    def matcher(self, guide: str) -> Any:
        import llguidance

        base = self.grammars.get(guide)
        if base is None:
            base = llguidance.LLMatcher(self.tokenizer, llguidance.LLMatcher.grammar_from_regex(guide), log_level=0)
            if base.is_error():
                raise EngineError(f"hf: invalid guide {guide!r}: {base.get_error()}")
            self.grammars[guide] = base
        return base.deep_copy()

    def matchers(self, row_guides: list[str | None]) -> RowGuides:
        return RowGuides(self, [self.matcher(g) if g is not None else None for g in row_guides])


class RowGuides:
    """The matchers of one batch's rows (None: a free row), and the per-step mask."""

    def __init__(self, guidance: Guidance, matchers: list[Any]):
        import torch

        self.g = guidance
        self.rows = matchers
        words = (guidance.vocab_size + 31) // 32
        self.bitmask = torch.full((len(matchers), words), -1, dtype=torch.int32)

    def mask(self, logits: Any, rows: list[int | None]) -> Any:
        """`logits` (one line per entry of `rows`) with the tokens each guided row may not take set to -inf."""
        import llguidance.torch
        import numpy as np
        import torch

        todo = [(self.rows[row], j) for j, row in enumerate(rows) if row is not None and self.rows[row] is not None]
        if not todo:
            return logits
        bitmask = self.bitmask[: len(rows)]
        bitmask.fill_(-1)
        llguidance.torch.fill_next_token_bitmask_par(self.g.executor, todo, bitmask)
        # One bit per token, least significant first: unpack bytes to a boolean "blocked" matrix in C.
        blocked = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")[:, : logits.shape[-1]]
        blocked = torch.from_numpy(blocked).to(logits.device) == 0
        return logits.masked_fill(blocked, float("-inf"))

    def consume(self, row: int, token: int) -> bool:
        """Advance a row's matcher by its sampled token; True when the guide is complete and takes nothing more."""
        m = self.rows[row]
        if m is None:
            return False
        if not m.consume_token(token):
            raise EngineError(f"hf: guided row took a token its guide rejects ({m.get_error()})")
        return m.is_stopped()


def _new_cache(config: Any, reserve: int):
    """A DynamicCache whose full-attention layers write new tokens into spare room instead of concatenating."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    layers = getattr(cache, "layers", None)
    if layers:
        for i, layer in enumerate(layers):
            if type(layer) is DynamicLayer:
                layers[i] = _reserved_layer_class()(reserve)
    return cache


@functools.cache
def _reserved_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """Keys/values are views into a buffer with `reserve` free positions: a decode step writes one position
        in place (DynamicLayer copies the whole cache with torch.cat every step). A batch reselection replaces
        the tensors; the next update then moves them into a fresh buffer."""

        def __init__(self, reserve: int):
            super().__init__()
            self.reserve = reserve
            self._kbuf = self._vbuf = None

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, add = self.get_seq_length(), key_states.shape[-2]
            kb = self._kbuf
            if (
                kb is None
                or n == 0
                or self.keys.data_ptr() != kb.data_ptr()
                or kb.shape[0] != key_states.shape[0]
                or n + add > kb.shape[-2]
            ):
                cap = n + add + self.reserve
                kb = key_states.new_empty((*key_states.shape[:2], cap, key_states.shape[-1]))
                vb = value_states.new_empty((*value_states.shape[:2], cap, value_states.shape[-1]))
                if n:
                    kb[:, :, :n] = self.keys
                    vb[:, :, :n] = self.values
                self._kbuf, self._vbuf = kb, vb
            self._kbuf[:, :, n : n + add] = key_states
            self._vbuf[:, :, n : n + add] = value_states
            self.keys = self._kbuf[:, :, : n + add]
            self.values = self._vbuf[:, :, : n + add]
            return self.keys, self.values

        def _owns_view(self) -> bool:
            return (
                self._kbuf is not None and self.get_seq_length() > 0 and self.keys.data_ptr() == self._kbuf.data_ptr()
            )

        def _reselect(self, pick) -> None:
            """Apply a batch reselection to the whole buffer: one copy, and the spare room is kept."""
            n = self.keys.shape[-2]
            self._kbuf, self._vbuf = pick(self._kbuf), pick(self._vbuf)
            self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

        def batch_select_indices(self, indices) -> None:
            if self._owns_view():
                self._reselect(lambda t: t.index_select(0, indices))
            else:
                super().batch_select_indices(indices)

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self._owns_view():
                self._reselect(lambda t: t.repeat_interleave(repeats, dim=0))
            else:
                super().batch_repeat_interleave(repeats)

    return ReservedLayer


def _sample(logits, params: SamplingParams, u):
    """Next token per row and the rows' log-probabilities (log_softmax of logits / temperature).

    Sampling is inverse-CDF with one uniform per row, taken from that row's own generator: a row's choice
    depends only on its logits and its seed. Top-p keeps the smallest most-likely set with mass >= top_p.
    """
    import torch

    logits = logits.float()
    if params.greedy:
        return logits.argmax(-1), torch.log_softmax(logits, dim=-1)
    logprobs = torch.log_softmax(logits / params.temperature, dim=-1)
    probs = logprobs.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p  # mass before this token already reaches top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    cdf = probs.double().cumsum(-1)
    target = (u * cdf[:, -1]).unsqueeze(1)
    chosen = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)
    return chosen, logprobs


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest token prefix shared by all prompts, leaving each at least one token of its own."""
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


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


def _resolve_dtype(dtype: Any, device: Any) -> DtypeChoice:
    """None / "auto" / a dtype name / a torch.dtype -> the engine's DtypeChoice (auto: see metaconf.precision)."""
    name = "auto" if dtype is None else str(dtype).removeprefix("torch.")
    if name not in ("auto", *DTYPES):
        raise EngineError(f"hf: unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return choose_dtype(name, device=device.type)


def lowest_adapter_layer(adapter: str | Path) -> int:
    """The lowest decoder layer a PEFT LoRA adapter changes (0 when it changes every layer, or cannot tell)."""
    try:
        config = read_json(Path(adapter) / "adapter_config.json")
    except (OSError, DataError):
        return 0
    layers = config.get("layers_to_transform")
    if layers is None or config.get("modules_to_save"):
        return 0
    return min(layers) if isinstance(layers, list) else int(layers)


def _has_layer_stack(model: Any) -> bool:
    """Whether the model is a decoder stack metaconf can run layer by layer (Llama-style: layers, rotary, norm)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return all(hasattr(decoder, a) for a in ("layers", "rotary_emb", "norm")) and hasattr(model, "lm_head")


class SharedPrefill:
    """Lower-layer prefill results shared by engines on the same base model.

    LoRA adapters trained only on the upper layers (`layers_to_transform` >= `split`) leave layers below `split`
    exactly as in the base model, so the base model's hidden states entering layer `split` and its lower-layer
    KV cache serve every such adapter: evaluating k conditions prefills the lower layers once instead of k times.
    The base engine captures entries (while `capturing`), adapter engines reuse them; entries are keyed by the
    base model and the batch's token ids, so a batch is only reused exactly.
    """

    def __init__(self, split: int):
        self.split = split
        self.capturing = True
        self.entries: dict[str, dict[str, Any]] = {}
        self.hits = 0

    @staticmethod
    def key(model_identity: str, prompts: list[list[int]]) -> str:
        return stable_hash(model_identity, repr(prompts))

    def clear(self) -> None:
        self.entries.clear()
