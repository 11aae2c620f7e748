"""FSDP on CPU processes: accelerate's FSDP path, switched on where accelerate itself would not.

`accelerate launch` with an FSDP config sets ACCELERATE_USE_FSDP and the FSDP_* variables (FSDP_VERSION, ...).
accelerate (1.16) turns them into FSDP only on GPU-like devices: on CPU processes (gloo) it silently runs plain data
parallel instead. `enable_cpu_fsdp` switches a built trainer's accelerator to FSDP with the plugin read from those
same variables, before the model is prepared, so that the FSDP path (sharded parameters, the full state dict gathered
when the adapter is saved) is what runs on a CPU machine and what the test suite checks
(tests/test_training_distributed.py). On GPUs accelerate does this itself and nothing here changes.
"""

from __future__ import annotations

import os
from typing import Any


def fsdp_requested() -> bool:
    """Whether the launcher asked for FSDP (`accelerate launch` with `distributed_type: FSDP` sets this)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def enable_cpu_fsdp(trainer: Any) -> bool:
    """Make `trainer` (a transformers Trainer, not yet trained) shard its model with FSDP where the launcher asked for
    FSDP and accelerate fell back to CPU data parallel; returns whether the trainer runs FSDP."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if fsdp_requested() and state.distributed_type == DistributedType.MULTI_CPU:
        # both shared states: every later AcceleratorState() copies PartialState's distributed_type back
        PartialState().distributed_type = state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables, as accelerate would
        trainer.is_fsdp_enabled = True
    return state.distributed_type == DistributedType.FSDP
