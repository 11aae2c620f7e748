"""What the engines that run a model's weights themselves (hf, vllm) share: the model named once, and a PEFT LoRA
adapter folder identified by its content."""

from __future__ import annotations

from pathlib import Path

from metaconf.engines.base import Engine
from metaconf.engines.embedded import resolve_model
from metaconf.engines.store import CompletionStore
from metaconf.engines.weights import adapter_fingerprint


class LocalEngine(Engine):
    """An engine on a local folder or hub name ("embedded": the embedded model), optionally through an adapter."""

    def __init__(
        self, model: str | Path, adapter: str | Path | None, store: CompletionStore | str | Path | None, quiet: bool
    ):
        super().__init__(store=store, quiet=quiet)
        self.model_name = resolve_model(model)
        self.adapter_path = str(adapter) if adapter is not None else None
        self._adapter_fingerprint = adapter_fingerprint(adapter) if adapter is not None else ""

    @property
    def adapter_identity(self) -> str:
        return f"adapter@{self._adapter_fingerprint}" if self.adapter_path else ""  # content, not the path
