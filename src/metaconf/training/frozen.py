"""Train only the upper decoder layers on cached hidden states from the frozen lower ones.

A LoRA adapter on the top N layers leaves everything below them frozen, so the hidden states entering the lowest
adapted layer depend on the tokens alone. `FrozenLowerLayers` computes them once per distinct example (shared
across epochs, and across the conditions of a study, whose training sets repeat prompts), and training runs a
model made of the upper layers only, fed those states as `inputs_embeds`. A training step then costs the upper
layers' forward and backward instead of a forward through the whole stack.

The adapter trained this way is renumbered onto the full model's layers when saved (`save_full_adapter`), so it
loads like any other PEFT adapter.
"""

from __future__ import annotations

import copy
import inspect
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metaconf.errors import MetaconfError
from metaconf.io import atomic_folder, read_json, write_json

# Agreement required between the split model and the full one on a probe example, relative to the largest logit:
# fp32 throughout, or bf16 anywhere (bf16 keeps 8 bits of mantissa; a model that transforms inputs_embeds, the
# failure this probe catches, is off by the logits' own size)
PROBE_TOLERANCE = 1e-3
BF16_PROBE_TOLERANCE = 0.05


def _with_layers(model: Any, layers: slice) -> Any:
    """A copy of a causal LM's config restricted to `layers` (per-layer lists such as `layer_types` sliced too)."""
    config = copy.deepcopy(model.config)
    n = config.num_hidden_layers
    for key, value in list(vars(config).items()):
        if isinstance(value, list) and len(value) == n and key != "architectures":
            setattr(config, key, value[layers])
    config.num_hidden_layers = len(range(n)[layers])
    return config


def split_model(model: Any, split: int) -> tuple[Any, Any]:
    """(lower, upper) from a causal LM: `lower` is the model cut to its first `split` decoder layers with the final
    norm removed (its last hidden state is the input of layer `split`); `upper` is a new model of the remaining
    layers plus the final norm and LM head, with weights copied. `model` itself becomes `lower`."""
    import torch
    from transformers import AutoModelForCausalLM

    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    n = model.config.num_hidden_layers
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != n or not 0 < split < n:
        raise MetaconfError(f"cannot split {type(model).__name__} at layer {split}")
    upper = AutoModelForCausalLM.from_config(_with_layers(model, slice(split, n)), dtype=model.dtype)
    state = {}
    for name, tensor in model.state_dict().items():
        match = re.search(r"\.layers\.(\d+)\.", name)
        if match is None:
            state[name] = tensor
        elif int(match.group(1)) >= split:
            state[name.replace(match.group(0), f".layers.{int(match.group(1)) - split}.", 1)] = tensor
    missing, unexpected = upper.load_state_dict(state, strict=False)
    tied = {k for k in missing if "lm_head" in k and getattr(model.config, "tie_word_embeddings", False)}
    if set(missing) - tied or unexpected:
        odd = sorted(set(missing) - tied) + sorted(unexpected)
        raise MetaconfError(f"cannot split {type(model).__name__}: weights do not map ({', '.join(odd[:3])})")
    upper.generation_config = copy.deepcopy(model.generation_config)

    lower_config = _with_layers(model, slice(0, split))
    decoder.layers = torch.nn.ModuleList(list(layers)[:split])
    decoder.norm = torch.nn.Identity()
    model.config = decoder.config = lower_config
    return model.eval(), upper


class FrozenLowerLayers:
    """Hidden states entering decoder layer `split`, computed by the frozen layers below it once per distinct token
    sequence and kept in memory, in the lower model's dtype (hidden size x 4 bytes per token in fp32, 2 in bf16)."""

    def __init__(self, lower: Any, split: int, pad_token_id: int, states: dict | None = None):
        self.lower = lower
        self.split = split
        self.pad_token_id = pad_token_id
        self.states: dict[tuple[int, ...], Any] = {} if states is None else states
        self.computed_tokens = 0

    def precompute(self, sequences: Sequence[Sequence[int]], progress: bool = False) -> None:
        """Compute the states of every sequence not seen yet, sharing common prefixes.

        The sequences are visited in sorted order, so neighbours share their longest prefixes (the chat template's
        system prompt, a task's instructions, the first question of several pairs); the lower layers' KV cache is
        cut back to the prefix a sequence shares with the previous one and only the rest is run. On the demo's
        training sets this computes about half of the distinct tokens.
        """
        import torch
        from transformers import DynamicCache

        todo = sorted({tuple(int(t) for t in s) for s in sequences} - self.states.keys())
        if not todo:
            return
        decoder = self.lower.get_decoder()
        device = next(self.lower.parameters()).device
        cache = DynamicCache(config=decoder.config)
        cache_kw = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
        held: tuple[int, ...] = ()  # the tokens whose KV the cache holds, and their states
        held_states = None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"layers 0-{self.split - 1} (frozen)", unit="ex", dynamic_ncols=True)
        with torch.no_grad():
            for seq in todo:
                k = _shared_prefix(held, seq)
                if k == len(seq):  # a prefix of the sequence before it
                    self.states[seq] = held_states[:k].clone()
                else:
                    if k < len(held):
                        cache.crop(k - len(held))
                    out = (
                        decoder(input_ids=torch.tensor([seq[k:]], device=device), use_cache=True, **{cache_kw: cache})
                        .last_hidden_state[0]
                        .cpu()
                    )
                    states = out if k == 0 else torch.cat([held_states[:k], out])
                    self.states[seq], held, held_states = states, seq, states
                    self.computed_tokens += len(seq) - k
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def hidden(self, sequences: Sequence[Sequence[int]]) -> list[Any]:
        """One [length, hidden] tensor per sequence; the ones not seen before are computed in one padded batch."""
        import torch

        keys = [tuple(int(t) for t in s) for s in sequences]
        todo = list(dict.fromkeys(k for k in keys if k not in self.states))
        if todo:
            longest = max(map(len, todo))
            ids = torch.full((len(todo), longest), self.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, k in enumerate(todo):  # right padding: real tokens never attend to it
                ids[i, : len(k)] = torch.tensor(k)
                mask[i, : len(k)] = 1
            device = next(self.lower.parameters()).device
            with torch.no_grad():
                out = self.lower.get_decoder()(
                    input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
                ).last_hidden_state
            for i, k in enumerate(todo):
                self.states[k] = out[i, : len(k)].detach().cpu()
            self.computed_tokens += sum(map(len, todo))
        return [self.states[k] for k in keys]


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class FrozenStatesCollator:
    """Wraps TRL's collator: the batch's `input_ids` are replaced by the cached lower-layer states."""

    def __init__(self, collator: Any, frozen: FrozenLowerLayers):
        self.collator = collator
        self.frozen = frozen

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.collator(examples)
        input_ids, mask = batch.pop("input_ids"), batch["attention_mask"]
        sequences = [row[m.bool()].tolist() for row, m in zip(input_ids, mask)]
        states = self.frozen.hidden(sequences)
        embeds = torch.zeros(*input_ids.shape, states[0].shape[-1], dtype=states[0].dtype)
        for i, s in enumerate(states):
            embeds[i, : s.shape[0]] = s
        batch["inputs_embeds"] = embeds
        return batch


def split_logits_gap(want: Any, upper: Any, frozen: FrozenLowerLayers, input_ids: Sequence[int]) -> float:
    """Largest absolute difference between the full model's logits `want` ([1, length, vocab], computed before the
    split) and the split model's on the same tokens."""
    import torch

    with torch.no_grad():
        (states,) = frozen.hidden([input_ids])
        got = upper(inputs_embeds=states[None].to(upper.device), use_cache=False).logits
    return float((want.float().cpu() - got.float().cpu()).abs().max())


def save_full_adapter(trained_dir: str | Path, out_dir: str | Path, split: int, base_model: str) -> Path:
    """Rewrite an adapter trained on the upper model so it applies to the full model: layer i becomes i + split."""
    from safetensors.torch import load_file, save_file

    trained_dir, out_dir = Path(trained_dir), Path(out_dir)
    config = read_json(trained_dir / "adapter_config.json")
    layers = config.get("layers_to_transform")
    if layers is None:
        raise MetaconfError(f"{trained_dir}: adapter has no layers_to_transform to renumber")
    config["layers_to_transform"] = [int(i) + split for i in ([layers] if isinstance(layers, int) else layers)]
    config["base_model_name_or_path"] = base_model
    weights = load_file(str(trained_dir / "adapter_model.safetensors"))

    def renumber(name: str) -> str:
        return re.sub(r"\.layers\.(\d+)\.", lambda m: f".layers.{int(m.group(1)) + split}.", name, count=1)

    with atomic_folder(out_dir) as tmp:
        shutil.copytree(trained_dir, tmp, dirs_exist_ok=True)
        save_file(
            {renumber(k): v.contiguous() for k, v in weights.items()},
            str(tmp / "adapter_model.safetensors"),
            metadata={"format": "pt"},
        )
        write_json(tmp / "adapter_config.json", config)
    return out_dir
