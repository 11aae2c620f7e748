"""Grouped prefill: suffixes of very different lengths prefilled in groups, each padded to its own widest, give the
same completions and log-probabilities as one pass padded to the longest (tiny random Llama, fp32)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers.adapters import save_upper_adapter  # noqa: E402
from metaconf.engines import prefill  # noqa: E402
from metaconf.engines.hf import HFEngine, SharedPrefill  # noqa: E402
from metaconf.engines.prefill import suffix_groups  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Name a colour of the sky on a clear day, and say why it has that colour. " * 4}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
    [{"role": "user", "content": "A much longer question about many things " * 9 + "?"}],
    [{"role": "user", "content": "Why?"}],
]


def test_suffix_groups_minimise_padding_plus_overhead():
    assert suffix_groups([5, 100, 6, 98], overhead=10) == [[0, 2], [3, 1]]
    assert suffix_groups([5, 100, 6, 98], overhead=10**6) == [[0, 2, 3, 1]]  # one pass when passes are dear
    assert suffix_groups([7, 7, 7], overhead=0) in ([[0, 1, 2]], [[0], [1], [2]], [[0], [1, 2]], [[0, 1], [2]])
    assert sorted(i for g in suffix_groups([3, 1, 4, 1, 5, 9, 2, 6], overhead=2) for i in g) == list(range(8))


def _generate(engine, monkeypatch, overhead, **settings):
    monkeypatch.setattr(prefill, "GROUP_OVERHEAD_TOKENS", overhead)
    calls = engine.forward_calls
    out = engine.generate(PROMPTS, **settings)
    return out, engine.forward_calls - calls


def _same(a, b):
    assert [[c.text for c in comps] for comps in a] == [[c.text for c in comps] for comps in b]
    for comps_a, comps_b in zip(a, b):
        for x, y in zip(comps_a, comps_b):
            if x.logprobs:
                assert [t.logprob for t in x.logprobs] == pytest.approx([t.logprob for t in y.logprobs], abs=1e-4)


@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_grouped_prefill_gives_the_same_completions(tiny_model, monkeypatch, share_prefix, temperature):
    engine = HFEngine(tiny_model, quiet=True, share_prefix=share_prefix)
    settings = dict(n=3, temperature=temperature, max_new_tokens=6, seed=4, logprobs=2)
    one, one_calls = _generate(engine, monkeypatch, 10**9, **settings)
    grouped, grouped_calls = _generate(engine, monkeypatch, 0, **settings)
    assert grouped_calls > one_calls  # the grouped run did prefill in several passes
    _same(grouped, one)


def test_grouped_prefill_through_shared_lower_layers(tiny_model, tmp_path, monkeypatch):
    """The base engine stores grouped lower-layer states; an upper-layer adapter reuses them group by group and
    gets what it gets alone."""

    save_upper_adapter(tiny_model, tmp_path / "top")
    settings = dict(n=2, temperature=1.0, max_new_tokens=5, seed=3, logprobs=3)
    alone, _ = _generate(HFEngine(tiny_model, adapter=tmp_path / "top", quiet=True), monkeypatch, 10**9, **settings)
    shared = SharedPrefill(split=1)
    base = HFEngine(tiny_model, quiet=True, shared_prefill=shared)
    base_grouped, _ = _generate(base, monkeypatch, 0, **settings)
    base_alone, _ = _generate(HFEngine(tiny_model, quiet=True), monkeypatch, 10**9, **settings)
    _same(base_grouped, base_alone)
    assert all(len(e["layout"].groups) > 1 for e in shared.entries.values())
    adapted = HFEngine(tiny_model, adapter=tmp_path / "top", quiet=True, shared_prefill=shared)
    reused, _ = _generate(adapted, monkeypatch, 0, **settings)
    assert shared.hits == len(shared.entries) > 0
    _same(reused, alone)
