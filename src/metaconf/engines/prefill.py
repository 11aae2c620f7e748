"""Prefill for the hf engine: the prompts into the KV cache, with the work shared where it is the same.

The token prefix shared by every prompt of a batch is prefilled once; each prompt's own suffix is left-padded to a
common width and placed after it with exact position ids. Suffixes of very different lengths are not padded to the
longest: they are prefilled in groups of similar length (`suffix_groups`), each padded only to its own widest, and
their KV placed into the batch's left-padded cache, so the prefill computes close to the real tokens only (a batch
of 30 served questions of 20-190 tokens padded 1,363 tokens to 3,270 before). A `SharedPrefill` goes further
across engines: adapters that only change upper layers reuse the base model's lower-layer states (computed once
per batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metaconf.engines.base import stable_hash
from metaconf.engines.weights import lowest_adapter_layer

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate prefill
# The fixed cost of one more forward pass, in prompt tokens: a group of suffixes is split off when that saves more
# padded tokens than this (on a CPU one forward of the 135M model costs about as much as 10-30 tokens of prefill).
GROUP_OVERHEAD_TOKENS = 32


@dataclass
class Layout:
    """Where a batch's prompts sit in its cache: the shared prefix (`prefix` positions), then each suffix
    right-aligned in `width` columns; `mask` (rows x prefix + width) marks real tokens, `positions` (rows x width)
    are the suffixes' position ids; `groups` are the row sets prefilled together (each padded to its own widest)."""

    prefix: int
    width: int
    lengths: list[int]
    groups: list[list[int]]
    mask: Any
    positions: Any

    def group_width(self, group: list[int]) -> int:
        return max(self.lengths[i] for i in group)


def suffix_groups(lengths: list[int], overhead: int | None = None) -> list[list[int]]:
    """Row indices split into groups of similar length, each prefilled padded to its own widest: the split (of the
    rows sorted by length into runs) with the fewest padded tokens plus `overhead` per group (exact, O(n^2))."""
    overhead = GROUP_OVERHEAD_TOKENS if overhead is None else overhead
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    sorted_len = [lengths[i] for i in order]
    best = [0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):  # the last group: sorted rows i..j-1, padded to the widest, sorted_len[j - 1]
            cost = best[i] + (j - i) * sorted_len[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], len(order)
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


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
            return prefill_upper(engine, entry, shared.split, cache), entry["layout"].mask
    capture = shared is not None and shared.capturing and engine.adapter_path is None and has_layer_stack(engine.model)
    if not capture:
        logits, layout = prefill_batch(engine, prompts, cache)
        return logits, layout.mask
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
        logits, layout = prefill_batch(engine, prompts, cache)
    finally:
        hook.remove()
    shared.entries[key] = _entry(captured, layout, cache, shared.split)
    return logits, layout.mask


def layout_of(engine: Any, prompts: list[list[int]]) -> tuple[Layout, Any]:
    """The batch's layout (shared prefix, right-aligned suffixes, their groups) and its suffix token ids."""
    import torch

    prefix = common_prefix(prompts) if engine.share_prefix and len(prompts) > 1 else 0
    if prefix < MIN_SHARED_PREFIX:
        prefix = 0
    suffixes = [p[prefix:] for p in prompts]
    lengths = [len(s) for s in suffixes]
    width = max(lengths)
    ids = torch.full((len(prompts), width), engine.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), prefix + width), dtype=torch.long)
    mask[:, :prefix] = 1
    for i, s in enumerate(suffixes):
        ids[i, width - len(s) :] = torch.tensor(s)
        mask[i, prefix + width - len(s) :] = 1
    positions = (prefix + mask[:, prefix:].cumsum(-1) - 1).clamp(min=0)
    dev = engine.device
    groups = suffix_groups(lengths) if len(prompts) > 1 else [[0]]
    return Layout(prefix, width, lengths, groups, mask.to(dev), positions.to(dev)), ids.to(dev)


def prefill_batch(engine: Any, prompts: list[list[int]], cache: Any) -> tuple[Any, Layout]:
    """The common prefix once, then the left-padded suffixes (in one pass, or in groups of similar length whose KV
    is then placed into `cache`): the last position's logits and the batch's layout."""
    import torch

    dev = engine.device
    layout, ids = layout_of(engine, prompts)
    rows = len(prompts)
    if len(layout.groups) == 1 or not growable(cache):
        layout.groups = [list(range(rows))]
        if layout.prefix:
            engine.forward(input_ids=torch.tensor([prompts[0][: layout.prefix]], device=dev), cache=cache)
            cache.batch_repeat_interleave(rows)
        out = engine.forward(input_ids=ids, attention_mask=layout.mask, position_ids=layout.positions, cache=cache)
        return out.logits[:, -1, :], layout
    base = None
    if layout.prefix:
        base = plain_cache(engine)
        engine.forward(input_ids=torch.tensor([prompts[0][: layout.prefix]], device=dev), cache=base)
    logits, kv = None, [None] * len(cache.layers)
    for group in layout.groups:
        sel, cols = torch.tensor(group, device=dev), group_columns(layout, group)
        part = plain_cache(engine, base, len(group))
        own = cols[layout.prefix :] - layout.prefix
        out = engine.forward(
            input_ids=ids[sel][:, own],
            attention_mask=layout.mask[sel][:, cols],
            position_ids=layout.positions[sel][:, own],
            cache=part,
        )
        last = out.logits[:, -1, :]
        logits = last.new_empty((rows, last.shape[-1])) if logits is None else logits
        logits[sel] = last
        place_kv(kv, part, sel, cols, layout, first_layer=0)
    for i, (keys, values) in enumerate(kv):
        cache.layers[i].update(keys, values, i)
    return logits, layout


def growable(cache: Any) -> bool:
    """Whether every layer of `cache` is a plain growing one (grouped KV can be placed into it)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(isinstance(layer, DynamicLayer) and not layer.is_initialized for layer in layers)


def plain_cache(engine: Any, base: Any = None, rows: int = 1) -> Any:
    """A fresh DynamicCache for one group's prefill, holding `base`'s KV (the shared prefix) repeated `rows` times."""
    from transformers import DynamicCache

    part = DynamicCache(config=engine.model.config)
    if base is not None:
        for i, layer in enumerate(base.layers):
            part.layers[i].update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), i)
    return part


def group_columns(layout: Layout, group: list[int]) -> Any:
    """The cache columns a group's rows use: the shared prefix, then the last (group's widest) suffix columns."""
    import torch

    total = layout.prefix + layout.width
    start = total - layout.group_width(group)
    return torch.cat([torch.arange(layout.prefix), torch.arange(start, total)]).to(layout.mask.device)


def place_kv(kv: list[Any], part: Any, sel: Any, cols: Any, layout: Layout, first_layer: int) -> None:
    """Copy a group's KV (layers from `first_layer`) into the batch-wide tensors `kv` (made on first use, zeros
    where a row has padding: masked out like the padding itself) at the group's rows and columns."""
    rows, total = layout.mask.shape
    for i in range(first_layer, len(kv)):
        keys, values = part.layers[i].keys, part.layers[i].values
        if kv[i] is None:
            shape = (rows, keys.shape[1], total, keys.shape[-1])
            kv[i] = (keys.new_zeros(shape), values.new_zeros((*shape[:3], values.shape[-1])))
        kv[i][0][sel[:, None], :, cols[None, :]] = keys.transpose(1, 2)
        kv[i][1][sel[:, None], :, cols[None, :]] = values.transpose(1, 2)


def _entry(captured: list[Any], layout: Layout, cache: Any, split: int) -> dict[str, Any]:
    """What an adapter engine needs to skip the lower layers: their output hidden states (the prefix's, when it was
    prefilled apart, expanded across the rows; the groups' placed like their KV), the layout and the lower KV."""
    import torch

    rows = layout.mask.shape[0]
    parts = captured[1:] if layout.prefix else captured  # the prefix had its own forward pass
    hidden = parts[0]
    if len(parts) > 1:  # one per group, each right-aligned in the batch's suffix columns
        hidden = parts[0].new_zeros((rows, layout.width, parts[0].shape[-1]))
        for group, part in zip(layout.groups, parts, strict=True):
            hidden[torch.tensor(group, device=hidden.device), layout.width - part.shape[1] :] = part
    positions = layout.positions
    if layout.prefix:
        hidden = torch.cat([captured[0].expand(rows, -1, -1), hidden], dim=1)
        positions = torch.cat([torch.arange(layout.prefix, device=positions.device).expand(rows, -1), positions], 1)
    kv = [(cache.layers[i].keys.clone(), cache.layers[i].values.clone()) for i in range(split)]
    return {"hidden": hidden, "layout": layout, "positions": positions, "kv": kv}


def prefill_upper(engine: Any, entry: dict[str, Any], split: int, cache: Any) -> Any:
    """Run only the layers from `split` up on stored lower-layer hidden states (group by group, as the base engine
    did); copy the stored lower KV. Returns the last position's logits."""
    import torch

    layout, hidden, positions = entry["layout"], entry["hidden"], entry["positions"]
    if len(layout.groups) == 1 or not growable(cache):
        logits = _upper_layers(engine, hidden, layout.mask, positions, split, cache)
    else:
        logits, kv = None, [None] * len(cache.layers)
        for group in layout.groups:
            sel, cols = torch.tensor(group, device=hidden.device), group_columns(layout, group)
            part = plain_cache(engine)
            last = _upper_layers(
                engine, hidden[sel][:, cols], layout.mask[sel][:, cols], positions[sel][:, cols], split, part
            )
            logits = last.new_empty((hidden.shape[0], last.shape[-1])) if logits is None else logits
            logits[sel] = last
            place_kv(kv, part, sel, cols, layout, first_layer=split)
        for i in range(split, len(kv)):
            cache.layers[i].update(*kv[i], i)
    for i, (keys, values) in enumerate(entry["kv"]):
        cache.layers[i].update(keys, values, i)
    return logits


def _upper_layers(engine: Any, hidden: Any, mask: Any, positions: Any, split: int, cache: Any) -> Any:
    """The decoder layers from `split` up, the final norm and the LM head on `hidden`: the last position's logits."""
    from transformers.masking_utils import create_causal_mask

    decoder = engine.model.get_decoder()
    engine.forward_calls += 1
    causal_mask = create_causal_mask(
        config=engine.model.config,
        inputs_embeds=hidden,
        attention_mask=mask,
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
    return engine.model.lm_head(decoder.norm(hidden[:, -1:, :]))[:, -1, :]
