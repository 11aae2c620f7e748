"""What an engine can do, said once in one typed object: the study and the tasks ask this, never the engine's kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

AdapterMode = Literal["path", "served", "none"]


@dataclass(frozen=True)
class Capabilities:
    """An engine's abilities.

    `guide`: honours a guide (a regex the completion must match); `shared_prefill`: can share lower-layer prefill
    with adapter engines on the same base model; `local_weights`: the weights folder training can use (None for a
    served model); `dtype`: the number format it runs in (None when the server decides); `per_sample_seeds`: each
    sample has its own seed (the same text on a rerun or another n); `adapters`: how an adapter is named ("path":
    a PEFT folder, "served": a name the server knows it by, "none": no adapters)."""

    guide: bool = False
    shared_prefill: bool = False
    local_weights: str | None = None
    dtype: str | None = None
    per_sample_seeds: bool = True
    adapters: AdapterMode = "none"


@dataclass(frozen=True)
class Adapter:
    """A trained condition's adapter, by both of its names: its PEFT folder (local engines load it) and the name a
    server serves it under (remote engines ask for it); each engine takes the one its `adapters` mode says."""

    condition: str
    path: Path
    served: str
