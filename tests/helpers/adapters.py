"""A LoRA adapter on the tiny model's upper layer with random (non-zero) B matrices: an adapter that really changes
the model's outputs above a lower layer the base engine can share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def save_upper_adapter(model: Path, folder: Path, modules: Sequence[str] = ("q_proj", "v_proj"), seed: int = 2) -> Path:
    """Save a rank-4 adapter on layer 1 of `model` (the 2-layer tiny model) to `folder`, its lora_B drawn from
    N(0, 1) with `seed`; returns `folder`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model),
        LoraConfig(r=4, lora_alpha=8, target_modules=list(modules), layers_to_transform=[1]),
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    peft_model.save_pretrained(folder)
    return Path(folder)
