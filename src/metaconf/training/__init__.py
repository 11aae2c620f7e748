"""Fine-tuning: LoRA adapters with TRL/PEFT (one machine or many via accelerate) and hosted fine-tuning jobs.

Importing this package is cheap; torch / transformers / TRL load when training starts.
"""

from metaconf.engines.embedded import resolve_model
from metaconf.training.config import LoraTrainConfig
from metaconf.training.lora import merge_adapter, train_conditions, train_lora

__all__ = ["LoraTrainConfig", "merge_adapter", "resolve_model", "train_conditions", "train_lora"]
