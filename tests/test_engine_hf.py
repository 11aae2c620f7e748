"""HFEngine on a tiny random Llama (built here, embedded tokenizer): fast, offline, deterministic."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from helpers.adapters import save_upper_adapter  # noqa: E402
from metaconf.engines import get_engine  # noqa: E402
from metaconf.engines.hf import HFEngine  # noqa: E402
from metaconf.engines.prefill import common_prefix  # noqa: E402
from metaconf.engines.store import CompletionStore  # noqa: E402
from metaconf.engines.types import SamplingParams  # noqa: E402
from metaconf.errors import EngineError  # noqa: E402

PROMPTS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "user", "content": "Name a colour of the sky on a clear day, and say why it has that colour."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
]


@pytest.fixture(scope="module")
def engine(tiny_model):
    return HFEngine(tiny_model, quiet=True)


def texts(comps):
    return [c.text for c in comps]


def test_n_samples_per_prompt_and_token_counts(engine):
    out = engine.generate(PROMPTS, n=4, temperature=1.0, max_new_tokens=5, seed=0)
    assert [len(c) for c in out] == [4, 4, 4]
    for prompt, comps in zip(PROMPTS, out):
        for c in comps:
            assert c.prompt_tokens == len(engine.prompt_ids(prompt))
            assert 1 <= c.completion_tokens <= 5
    # a random model's samples of one prompt differ from each other
    assert len(set(texts(out[1]))) > 1


def test_greedy_is_batch_invariant(engine):
    batched = engine.generate(PROMPTS, n=2, temperature=0, max_new_tokens=8)
    for prompt, comps in zip(PROMPTS, batched):
        alone = engine.generate([prompt], n=1, temperature=0, max_new_tokens=8)[0]
        assert texts(comps) == [alone[0].text] * 2


def test_seeded_sampling_is_batch_and_n_invariant(engine):
    batched = engine.generate(PROMPTS, n=4, temperature=1.0, max_new_tokens=8, seed=3)
    for prompt, comps in zip(PROMPTS, batched):
        alone = engine.generate([prompt], n=2, temperature=1.0, max_new_tokens=8, seed=3)[0]
        assert texts(alone) == texts(comps[:2])


def test_same_seed_same_text_other_seed_differs(engine):
    a = engine.generate(PROMPTS[:1], n=3, temperature=1.0, max_new_tokens=8, seed=11)[0]
    b = engine.generate(PROMPTS[:1], n=3, temperature=1.0, max_new_tokens=8, seed=11)[0]
    c = engine.generate(PROMPTS[:1], n=3, temperature=1.0, max_new_tokens=8, seed=12)[0]
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)


def test_shared_prefix_changes_nothing(tiny_model, engine):
    plain = HFEngine(tiny_model, quiet=True, share_prefix=False)
    assert common_prefix([engine.prompt_ids(p) for p in PROMPTS[:2]]) >= 8
    for temp in (0.0, 1.0):
        assert [texts(c) for c in engine.generate(PROMPTS, n=2, temperature=temp, max_new_tokens=6, seed=5)] == [
            texts(c) for c in plain.generate(PROMPTS, n=2, temperature=temp, max_new_tokens=6, seed=5)
        ]


def test_small_batch_budget_gives_same_results(tiny_model, engine):
    small = HFEngine(tiny_model, quiet=True, max_batch_tokens=64)
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=4, seed=2)
    assert len(small.plan_batches(_requests(small, PROMPTS, params), params)) == len(PROMPTS)
    assert [texts(c) for c in small.generate_with(PROMPTS, params)] == [
        texts(c) for c in engine.generate_with(PROMPTS, params)
    ]


def _requests(engine, prompts, params):
    from metaconf.engines.types import PromptRequest

    return [PromptRequest(list(p), list(range(params.n)), seed=i) for i, p in enumerate(prompts)]


def test_plan_batches_sorts_by_length_and_respects_budget(tiny_model):
    eng = HFEngine(tiny_model, quiet=True, max_batch_tokens=200)
    prompts = [[{"role": "user", "content": "word " * k}] for k in (30, 1, 12, 5, 40, 2)]
    params = SamplingParams(n=2, max_new_tokens=10)
    batches = eng.plan_batches(_requests(eng, prompts, params), params)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(prompts)))
    lengths = [len(eng.prompt_ids(prompts[i])) for i in flat]
    assert lengths == sorted(lengths)
    for b in batches:
        if len(b) > 1:
            assert len(b) * 2 * (max(len(eng.prompt_ids(prompts[i])) for i in b) + 10) <= 200


def test_max_new_tokens_and_finish_reason_length(engine):
    for c in engine.generate(PROMPTS, n=2, temperature=1.0, max_new_tokens=3, seed=0)[0]:
        assert c.completion_tokens == 3 and c.finish_reason == "length"


def test_eos_stops_a_row(tiny_model):
    eng = HFEngine(tiny_model, quiet=True)
    first = eng.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=3)[0][0]
    tok = eng.tokenizer
    # make the greedy second token the end of sequence: that row must stop there with reason "stop"
    eos = min(eng.eos_ids)
    hidden_bias = torch.zeros(len(tok))
    hidden_bias[eos] = 1e4

    def hook(_module, _inputs, output):
        return output + hidden_bias

    handle = eng.model.lm_head.register_forward_hook(hook)
    try:
        c = eng.generate(PROMPTS[:1], n=2, temperature=1.0, max_new_tokens=5, seed=1)[0]
    finally:
        handle.remove()
    assert first.completion_tokens == 3
    assert all(x.finish_reason == "stop" and x.completion_tokens == 1 and x.text == "" for x in c)


def test_stop_string_cuts_text_and_stops_row(engine):
    free = engine.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=10)[0][0]
    assert len(free.text) > 6
    stop = free.text[3:6]
    cut = engine.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=10, stop=[stop])[0][0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < free.completion_tokens


def test_logprobs_are_sane(engine):
    comps = engine.generate(PROMPTS, n=2, temperature=0.7, max_new_tokens=4, seed=0, logprobs=5)
    for comp in (c for cs in comps for c in cs):
        assert comp.logprobs is not None and len(comp.logprobs) == comp.completion_tokens
        assert "".join(t.token for t in comp.logprobs) == comp.text
        for t in comp.logprobs:
            assert t.logprob <= 0
            assert 1 <= len(t.top) <= 5
            assert sum(math.exp(v) for v in t.top.values()) <= 1 + 1e-5
            assert t.logprob <= max(t.top.values()) + 1e-6
            if t.token in t.top:
                assert t.top[t.token] == pytest.approx(t.logprob, abs=1e-5)


def test_greedy_logprobs_pick_the_top_token(engine):
    comp = engine.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=4, logprobs=3)[0][0]
    for t in comp.logprobs:
        assert t.logprob == pytest.approx(max(t.top.values()), abs=1e-6)
    no_lp = engine.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=4)[0][0]
    assert no_lp.logprobs is None and no_lp.text == comp.text


def test_chosen_logprob_matches_the_model(engine):
    """The reported logprob equals log_softmax(logits / T) of the model's own full forward pass."""
    comp = engine.generate(PROMPTS[:1], n=1, temperature=0.5, max_new_tokens=3, seed=4, logprobs=2)[0][0]
    prompt = engine.prompt_ids(PROMPTS[0])
    gen = engine.tokenizer([comp.text], add_special_tokens=False)["input_ids"][0]
    ids = torch.tensor([prompt + gen])
    with torch.no_grad():
        logits = engine.model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits / 0.5, dim=-1)
    if len(gen) == len(comp.logprobs):  # tokenizing the text back gave the same tokens
        for j, tok in enumerate(gen):
            assert lp[len(prompt) - 1 + j, tok].item() == pytest.approx(comp.logprobs[j].logprob, abs=1e-4)
    else:
        first = lp[len(prompt) - 1]
        assert max(comp.logprobs[0].top.values()) == pytest.approx(first.max().item(), abs=1e-4)


def test_top_p_restricts_to_the_nucleus(engine):
    comps = engine.generate(PROMPTS[:1], n=6, temperature=1.0, top_p=1e-6, max_new_tokens=4, seed=9)[0]
    greedy = engine.generate(PROMPTS[:1], n=1, temperature=0, max_new_tokens=4)[0][0]
    assert texts(comps) == [greedy.text] * 6


def test_adapter_changes_outputs_and_identity(tiny_model, engine, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1.0)
    peft_model.save_pretrained(tmp_path / "a1")
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(-1)
    peft_model.save_pretrained(tmp_path / "a2")

    e1 = HFEngine(tiny_model, adapter=tmp_path / "a1", quiet=True)
    e2 = HFEngine(tiny_model, adapter=tmp_path / "a2", quiet=True)
    assert engine.adapter_identity == ""
    assert e1.adapter_identity and e1.adapter_identity != e2.adapter_identity
    assert e1.model_identity == engine.model_identity
    base_out = engine.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    assert [texts(c) for c in e1.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)] != [
        texts(c) for c in base_out
    ]
    unmerged = HFEngine(tiny_model, adapter=tmp_path / "a1", quiet=True, merge_adapter=False)
    assert [texts(c) for c in unmerged.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)] == [
        texts(c) for c in e1.generate(PROMPTS, n=1, temperature=0, max_new_tokens=6)
    ]


def test_store_serves_second_call_without_forward(tiny_model, tmp_path):
    store = CompletionStore(tmp_path / "c.sqlite")
    eng = get_engine("hf", model=tiny_model, store=store, quiet=True)
    first = eng.generate(PROMPTS, n=3, temperature=1.0, max_new_tokens=4, seed=0)
    calls = eng.forward_calls
    assert calls > 0
    again = eng.generate(PROMPTS, n=3, temperature=1.0, max_new_tokens=4, seed=0)
    assert eng.forward_calls == calls
    assert all(c.cached for cs in again for c in cs)
    assert [texts(c) for c in again] == [texts(c) for c in first]
    # more samples: only the new ones are generated, the old ones stay as they were
    more = eng.generate(PROMPTS, n=5, temperature=1.0, max_new_tokens=4, seed=0)
    assert [texts(c)[:3] for c in more] == [texts(c) for c in first]
    assert eng.forward_calls > calls


def test_model_identity_tracks_weights(tiny_model, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    a = HFEngine(copy, quiet=True).model_identity
    assert a == HFEngine(copy, quiet=True).model_identity
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    assert HFEngine(copy, quiet=True).model_identity != a


def test_missing_model_and_bad_adapter_are_clear_errors(tiny_model, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="cannot load"):
        HFEngine(tmp_path / "empty", quiet=True)
    (tmp_path / "adapter").mkdir()
    with pytest.raises(EngineError, match="adapter_model"):
        HFEngine(tiny_model, adapter=tmp_path / "adapter", quiet=True)
    with pytest.raises(EngineError, match="dtype"):
        HFEngine(tiny_model, dtype="float7", quiet=True)


@pytest.mark.slow
def test_embedded_model_answers():
    eng = HFEngine.embedded(quiet=True)
    prompts = [
        [{"role": "user", "content": "What is the capital of France? Answer with one word."}],
        [{"role": "user", "content": "Answer with the letter only. Which is a fruit? A. Carrot B. Apple C. Potato"}],
    ]
    greedy = eng.generate(prompts, n=1, temperature=0, max_new_tokens=12)
    assert "paris" in greedy[0][0].text.lower()
    assert greedy[1][0].text.strip()
    sampled = eng.generate(prompts, n=4, temperature=1.0, max_new_tokens=12, seed=0)
    alone = eng.generate(prompts[1:], n=2, temperature=1.0, max_new_tokens=12, seed=0)
    assert texts(sampled[1][:2]) == texts(alone[0])


def test_reserved_cache_layer_matches_dynamic_layer():
    """The in-place KV layer returns exactly what transformers' concatenating DynamicLayer returns."""
    from transformers.cache_utils import DynamicLayer

    from metaconf.engines.kv_cache import ReservedLayer

    torch.manual_seed(0)
    ref, fast = DynamicLayer(), ReservedLayer(reserve=3)

    def step(b, t):
        k, v = torch.randn(b, 2, t, 4), torch.randn(b, 2, t, 4)
        for a, c in zip(ref.update(k, v), fast.update(k.clone(), v.clone())):
            assert torch.equal(a, c)

    step(1, 5)
    ref.batch_repeat_interleave(3), fast.batch_repeat_interleave(3)
    step(3, 2)
    for _ in range(5):  # more steps than the reserve: the buffer must grow
        step(3, 1)
    idx = torch.tensor([2, 0, 0])
    ref.batch_select_indices(idx), fast.batch_select_indices(idx)
    step(3, 1)
    assert fast.get_seq_length() == ref.get_seq_length() == 13
    assert torch.equal(fast.keys, ref.keys) and torch.equal(fast.values, ref.values)


def test_rows_finishing_at_different_steps_keep_their_own_text(engine):
    """Rows that stop early (stop string) while others continue: each result equals that sample generated alone."""
    free = engine.generate(PROMPTS[:1], n=6, temperature=1.0, max_new_tokens=6, seed=21)[0]
    stop = next(t for t in free[0].text.split() if t)[:2]
    together = engine.generate(PROMPTS[:1], n=6, temperature=1.0, max_new_tokens=6, seed=21, stop=[stop])[0]
    for full, cut in zip(free, together):
        expected = full.text[: full.text.find(stop)] if stop in full.text else full.text
        assert cut.text == expected
    assert any(c.finish_reason == "stop" for c in together)


def test_shared_prefill_reuses_lower_layers_for_upper_layer_adapters(tiny_model, tmp_path):
    """An adapter on the top layer only gets the same completions (and log-probabilities) whether it prefills
    every layer itself or starts from the base model's stored lower-layer states."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from metaconf.engines.hf import SharedPrefill

    save_upper_adapter(tiny_model, tmp_path / "top", modules=["q_proj", "v_proj", "down_proj"])
    prompts = PROMPTS + [[{"role": "user", "content": "A much longer question " * 5 + "?"}]]
    settings = dict(n=2, temperature=1.0, max_new_tokens=5, seed=3, logprobs=3)

    alone = HFEngine(tiny_model, adapter=tmp_path / "top", quiet=True).generate(prompts, **settings)
    shared = SharedPrefill(split=1)
    base = HFEngine(tiny_model, quiet=True, shared_prefill=shared)
    base_out = base.generate(prompts, **settings)
    assert shared.entries and shared.hits == 0
    adapted = HFEngine(tiny_model, adapter=tmp_path / "top", quiet=True, shared_prefill=shared)
    reused = adapted.generate(prompts, **settings)
    assert shared.hits == len(shared.entries)
    assert [texts(c) for c in reused] == [texts(c) for c in alone]
    assert [texts(c) for c in reused] != [texts(c) for c in base_out]  # the adapter still acts
    for got, want in zip(reused, alone):
        for a, b in zip(got, want):
            assert [t.logprob for t in a.logprobs] == pytest.approx([t.logprob for t in b.logprobs], abs=1e-4)

    # an adapter that also changes the lower layers never reuses them
    everywhere = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"])
    )
    everywhere.save_pretrained(tmp_path / "all")
    hits = shared.hits
    HFEngine(tiny_model, adapter=tmp_path / "all", quiet=True, shared_prefill=shared).generate(prompts, **settings)
    assert shared.hits == hits
