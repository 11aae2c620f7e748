"""Prefill for the hf engine: the prompts into the KV cache, with the work shared where it is the same.

The token prefix shared by every prompt of a batch is prefilled once; each prompt's own suffix is left-padded to a
common width and placed after it with exact position ids. A `SharedPrefill` goes further across engines: adapters
that only change upper layers reuse the base model's lower-layer states (computed once per batch)."""

from __future__ import annotations

from typing import Any

from metaconf.engines.base import stable_hash
from metaconf.engines.weights import lowest_adapter_layer

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate prefill


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

    @classmethod
    def for_adapters(cls, adapters: list[Any]) -> SharedPrefill | None:
        """One for a study's adapter folders: split below the lowest layer any of them changes (None: some adapter
        changes every layer, or there are none)."""
        split = min((lowest_adapter_layer(a) for a in adapters), default=0)
        return cls(split) if split > 0 else None


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest token prefix shared by all prompts, leaving each at least one token of its own."""
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


def has_layer_stack(model: Any) -> bool:
    """Whether the model is a decoder stack metaconf can run layer by layer (Llama-style: layers, rotary, norm)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    return all(hasattr(decoder, a) for a in ("layers", "rotary_emb", "norm")) and hasattr(model, "lm_head")


def prefill(engine: Any, prompts: list[list[int]], cache: Any) -> tuple[Any, Any]:
    """Fill `cache` with the prompts; returns the last position's logits and the attention mask. With the engine's
    `SharedPrefill`, an adapter engine reuses a stored batch and the base engine stores its batches."""
    shared = engine.shared_prefill
    key = shared.key(engine.model_identity, prompts) if shared is not None else None
    if shared is not None and engine.adapter_path is not None and engine.lowest_adapter_layer() >= shared.split:
        entry = shared.entries.get(key)
        if entry is not None and has_layer_stack(engine.model):
            shared.hits += 1
            return prefill_upper(engine, entry, shared.split, cache), entry["mask"]
    capture = shared is not None and shared.capturing and engine.adapter_path is None and has_layer_stack(engine.model)
    if not capture:
        out, mask, _ = prefill_batch(engine, prompts, cache)
        return out.logits[:, -1, :], mask
    captured: list[Any] = []
    hook = (
        engine.model.get_decoder()
        .layers[shared.split]
        .register_forward_pre_hook(
            lambda _m, args, kwargs: captured.append((args[0] if args else kwargs["hidden_states"]).clone()),
            with_kwargs=True,
        )
    )
    try:
        out, mask, positions = prefill_batch(engine, prompts, cache)
    finally:
        hook.remove()
    shared.entries[key] = _entry(captured, mask, positions, cache, shared.split, len(prompts))
    return out.logits[:, -1, :], mask


def prefill_batch(engine: Any, prompts: list[list[int]], cache: Any) -> tuple[Any, Any, Any]:
    """The common prefix once (then repeated across the batch), then the left-padded suffixes: (model output,
    attention mask, the suffixes' position ids)."""
    import torch

    dev = engine.device
    prefix = common_prefix(prompts) if engine.share_prefix and len(prompts) > 1 else 0
    if prefix < MIN_SHARED_PREFIX:
        prefix = 0
    if prefix:
        engine.forward(input_ids=torch.tensor([prompts[0][:prefix]], device=dev), cache=cache)
        cache.batch_repeat_interleave(len(prompts))
    suffixes = [p[prefix:] for p in prompts]
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(prompts), width), engine.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), prefix + width), dtype=torch.long)
    mask[:, :prefix] = 1
    for i, s in enumerate(suffixes):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, prefix + width - len(s) :] = 1
    positions = (prefix + mask[:, prefix:].cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(dev), mask.to(dev), positions.to(dev)
    out = engine.forward(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
    return out, mask, positions


def _entry(captured: list[Any], mask: Any, positions: Any, cache: Any, split: int, rows: int) -> dict[str, Any]:
    """What an adapter engine needs to skip the lower layers: their output hidden states (the prefix's, when it was
    prefilled apart, expanded across the rows), the mask, positions and the lower layers' KV."""
    import torch

    hidden = captured[-1]
    if len(captured) > 1:  # the prefix had its own forward pass
        prefix = captured[0].shape[1]
        hidden = torch.cat([captured[0].expand(rows, -1, -1), hidden], dim=1)
        positions = torch.cat([torch.arange(prefix, device=positions.device).expand(rows, -1), positions], 1)
    kv = [(cache.layers[i].keys.clone(), cache.layers[i].values.clone()) for i in range(split)]
    return {"hidden": hidden, "mask": mask, "positions": positions, "kv": kv}


def prefill_upper(engine: Any, entry: dict[str, Any], split: int, cache: Any) -> Any:
    """Run only the layers from `split` up on stored lower-layer hidden states; copy the stored lower KV."""
    from transformers.masking_utils import create_causal_mask

    decoder = engine.model.get_decoder()
    hidden, positions = entry["hidden"], entry["positions"]
    engine.forward_calls += 1
    causal_mask = create_causal_mask(
        config=engine.model.config,
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
            **{engine.cache_kw: cache},
        )
        hidden = out[0] if isinstance(out, tuple) else out
    for i, (keys, values) in enumerate(entry["kv"]):
        cache.layers[i].update(keys, values, i)
    return engine.model.lm_head(decoder.norm(hidden[:, -1:, :]))[:, -1, :]
