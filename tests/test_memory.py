"""Peak resident memory per stage (metaconf.memory) and the evaluation's shared prefill kept on disk."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from helpers.adapters import save_upper_adapter
from helpers.study import SMALL, ScriptedStudy
from metaconf import memory
from metaconf.memory import MIB, PeakMeter, current_rss, peak_rss
from metaconf.study.config import parse_config

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")


def _touch(mib: int) -> np.ndarray:
    """An array of `mib` MiB whose every page is written (so it is resident)."""
    block = np.empty(mib * MIB, dtype=np.uint8)
    block[::4096] = 1
    return block


@linux
def test_a_stage_that_allocates_shows_a_larger_peak_than_one_that_does_not():
    meter = PeakMeter()
    assert meter.resets and "VmHWM" in meter.method
    meter.start("big")
    block = _touch(300)
    del block  # freed (munmap) before the stage ends: only the peak remembers it
    big = meter.stop("big")
    meter.start("small")
    sum(range(1000))
    small = meter.stop("small")
    assert big >= small + 250, (big, small)
    assert meter.run_peak == max(big, small, meter.record()["before_stages"])
    record = meter.record()
    assert record["stages"] == {"big": big, "small": small} and record["unit"] == "MiB"
    # the reset really lowered the high-water mark: the small stage peaked near the resident size, not at `big`
    assert small < current_rss() / MIB + 50


def test_without_proc_the_meter_falls_back_to_getrusage_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "STATUS", tmp_path / "no-status")
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "no-dir" / "clear_refs")
    meter = PeakMeter()
    assert not meter.resets and "getrusage" in meter.method
    meter.start("a")
    assert meter.stop("a") > 0 and peak_rss() > 0  # the process's peak so far, in MiB
    assert current_rss() is None


def test_a_study_writes_each_stage_peak_next_to_its_timings(tmp_path):
    run_dir = tmp_path / "run"
    ScriptedStudy(parse_config({**SMALL, "conditions": ["base"]}), run_dir, quiet=True).run(
        ("data", "targets", "consistency", "evaluate", "metrics")
    )
    record = json.loads((run_dir / "memory.json").read_text())
    timings = json.loads((run_dir / "timings.json").read_text())
    stages = {"data", "targets", "consistency", "evaluate", "metrics"}
    assert set(record["stages"]) == set(timings) - {"total"} == stages
    assert all(value > 10 for value in record["stages"].values())  # MiB: a Python process with numpy imported
    assert record["peak"] == max([record["before_stages"], *record["stages"].values()])


def test_spilled_entries_round_trip_exactly_and_own_their_folder(tmp_path):
    import torch

    from metaconf.engines.spill import SpilledEntries

    (tmp_path / "spill").mkdir()
    (tmp_path / "spill" / "left-by-a-crash.pt").write_text("x")
    entries = SpilledEntries(tmp_path / "spill")
    assert not (tmp_path / "spill" / "left-by-a-crash.pt").exists() and len(entries) == 0
    value = {
        "hidden": torch.randn(3, 5, 4, dtype=torch.bfloat16),
        "mask": torch.ones(3, 5, dtype=torch.long),
        "kv": [(torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)) for _ in range(2)],
    }
    key = "ab" * 32
    entries[key] = value
    got = entries.get(key)
    assert got is not value and got["hidden"].dtype == torch.bfloat16 and torch.equal(got["hidden"], value["hidden"])
    assert all(torch.equal(a, b) for pa, pb in zip(got["kv"], value["kv"]) for a, b in zip(pa, pb))
    assert entries.get("cd" * 32) is None and key in entries and list(entries) == [key]
    with pytest.raises(KeyError):
        entries["../escape"] = value
    entries.clear()
    assert len(entries) == 0 and not list((tmp_path / "spill").iterdir())
    entries.close()
    assert not (tmp_path / "spill").exists()


def test_a_shared_prefill_on_disk_gives_the_adapter_the_same_completions(tiny_model, tmp_path):
    """The evaluation's shared prefill kept on disk: an upper-layer adapter reuses every stored batch and answers
    exactly as when it prefills every layer itself."""

    from metaconf.engines.hf import HFEngine, SharedPrefill
    from metaconf.engines.spill import SpilledEntries

    save_upper_adapter(tiny_model, tmp_path / "top")
    prompts = [[{"role": "user", "content": f"Question {i}: " + "words " * (3 * i) + "?"}] for i in range(4)]
    settings = dict(n=2, temperature=1.0, max_new_tokens=5, seed=3, logprobs=2)
    alone = HFEngine(tiny_model, adapter=tmp_path / "top", quiet=True).generate(prompts, **settings)
    shared = SharedPrefill(split=1)
    shared.entries = SpilledEntries(tmp_path / "prefill")
    HFEngine(tiny_model, quiet=True, shared_prefill=shared).generate(prompts, **settings)
    assert len(shared.entries) > 0 and len(list((tmp_path / "prefill").glob("*.pt"))) == len(shared.entries)
    adapted = HFEngine(tiny_model, adapter=tmp_path / "top", quiet=True, shared_prefill=shared)
    reused = adapted.generate(prompts, **settings)
    assert shared.hits == len(shared.entries)
    for got, want in zip(reused, alone):
        assert [c.text for c in got] == [c.text for c in want]
        for a, b in zip(got, want):
            assert [t.logprob for t in a.logprobs] == pytest.approx([t.logprob for t in b.logprobs], abs=1e-4)


def test_the_cpu_batch_budget_bounds_the_kv_cache_of_larger_models():
    import torch
    from transformers import LlamaConfig

    from metaconf.engines.hf import CPU_BATCH_TOKENS, CPU_KV_BYTES, batch_tokens, kv_bytes_per_token

    small = LlamaConfig(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, num_hidden_layers=30)
    large = LlamaConfig(hidden_size=2048, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=24)
    assert kv_bytes_per_token(small, torch.bfloat16) == 30 * 2 * 3 * 64 * 2  # SmolLM2-135M: 22.5 KiB a token
    assert batch_tokens(small, torch.bfloat16, "cpu") == batch_tokens(small, torch.float32, "cpu") == CPU_BATCH_TOKENS
    for dtype in (torch.bfloat16, torch.float32):  # SmolLM2-1.7B: 192 KiB a token in bf16
        tokens = batch_tokens(large, dtype, "cpu")
        assert tokens < CPU_BATCH_TOKENS and tokens * kv_bytes_per_token(large, dtype) <= CPU_KV_BYTES
    assert batch_tokens(large, torch.bfloat16, "cuda") == 1 << 18


def test_dropping_finished_rows_compacts_the_kv_cache_in_place():
    """Dropping rows (ascending indices) moves the kept rows down in the same buffer, with exactly the keys and
    values transformers' DynamicLayer keeps; other selections still copy."""
    import torch
    from transformers.cache_utils import DynamicLayer

    from metaconf.engines.kv_cache import ReservedLayer

    torch.manual_seed(0)
    ref, fast = DynamicLayer(), ReservedLayer(reserve=4)

    def step(b, t):
        k, v = torch.randn(b, 2, t, 4), torch.randn(b, 2, t, 4)
        for a, c in zip(ref.update(k, v), fast.update(k.clone(), v.clone())):
            assert torch.equal(a, c)

    step(5, 3)
    buffer = fast._kbuf.data_ptr()
    for keep in ([0, 2, 3, 4], [1, 2], [0]):
        idx = torch.tensor(keep)
        ref.batch_select_indices(idx), fast.batch_select_indices(idx)
        assert fast._kbuf.data_ptr() == buffer  # no second buffer
        step(len(keep), 1)
        assert torch.equal(fast.keys, ref.keys) and torch.equal(fast.values, ref.values)
    idx = torch.tensor([0, 0])  # an expansion is not a compaction
    ref.batch_select_indices(idx), fast.batch_select_indices(idx)
    step(2, 1)
    assert fast._kbuf.data_ptr() != buffer and torch.equal(fast.keys, ref.keys)
