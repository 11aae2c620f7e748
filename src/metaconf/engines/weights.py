"""What identifies a model's and an adapter's weights, and which layers an adapter changes (read from its files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from metaconf.errors import DataError, EngineError
from metaconf.io import file_sha256, read_json


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
