"""Shared fixtures: a tiny random Llama (with the embedded model's tokenizer and chat template) built once per
test session, for every test that needs a real transformers model but not a real model's knowledge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.training_data import make_tiny_model

# `model.dtype: auto` runs bf16 on CPUs with AMX / AVX512-BF16; the suite's exact-equality tests assume fp32, so
# pin an AVX2-only CPU here (subprocesses inherit it). tests/test_precision.py tests bf16 explicitly.
os.environ["METACONF_CPU_FLAGS"] = "avx2"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer random Llama (hidden size 32) saved to a folder; read-only for tests."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model")
