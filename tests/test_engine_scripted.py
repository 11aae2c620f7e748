"""ScriptedEngine: the three kinds of script, stop strings, caching through the store, errors."""

import pytest

from metaconf.engines import Completion, get_engine
from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import EngineError


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def texts(result):
    return [[c.text for c in row] for row in result]


def test_dict_script_cycles_samples():
    engine = ScriptedEngine({"a": ["x", "y"], "b": "z"}, quiet=True)
    out = engine.generate([msgs("a"), msgs("b")], n=3)
    assert texts(out) == [["x", "y", "x"], ["z", "z", "z"]]
    assert [s for _, s in engine.calls] == [0, 1, 2, 0, 1, 2]


def test_callable_script_gets_messages_and_sample_index():
    engine = ScriptedEngine(lambda m, i: f"{m[-1]['content']}-{i}", quiet=True)
    assert texts(engine.generate([msgs("q")], n=2)) == [["q-0", "q-1"]]


def test_list_script_is_consumed_in_order_and_runs_out():
    engine = ScriptedEngine(["one", "two", "three"], quiet=True)
    assert texts(engine.generate([msgs("a"), msgs("b")], n=1)) == [["one"], ["two"]]
    assert texts(engine.generate([msgs("c")], n=1)) == [["three"]]
    with pytest.raises(EngineError, match="used up"):
        engine.generate([msgs("d")], n=1)


def test_stop_strings_cut_the_text_and_tokens_are_counted():
    engine = ScriptedEngine({"a": "Answer: B\nConfidence: 80%"}, quiet=True)
    (c,) = engine.generate([msgs("a")], n=1, stop=["\n"])[0]
    assert c.text == "Answer: B"
    assert c.completion_tokens == 2 and c.prompt_tokens == 3 and c.finish_reason == "stop"


def test_completion_outputs_keep_logprobs():
    from metaconf.engines import TokenLogprob

    lp = [TokenLogprob("A", -0.1, {"A": -0.1, "B": -2.3})]
    engine = ScriptedEngine(lambda m, i: Completion("A", logprobs=lp, finish_reason="length"), quiet=True)
    (c,) = engine.generate([msgs("a")], n=1, logprobs=2)[0]
    assert c.logprobs == lp and c.finish_reason == "length"


def test_duplicate_prompts_are_generated_once():
    engine = ScriptedEngine(lambda m, i: "x", quiet=True)
    out = engine.generate([msgs("a"), msgs("a"), msgs("b")], n=2)
    assert texts(out) == [["x", "x"]] * 3
    assert len(engine.calls) == 4


def test_store_serves_repeats_and_only_missing_samples_are_asked(tmp_path):
    store = tmp_path / "c.sqlite"
    first = ScriptedEngine(lambda m, i: f"{m[-1]['content']}{i}", store=store, quiet=True)
    a = first.generate([msgs("p"), msgs("q")], n=2, seed=3)
    again = ScriptedEngine(lambda m, i: "WRONG", store=store, quiet=True)
    b = again.generate([msgs("p"), msgs("q")], n=2, seed=3)
    assert texts(a) == texts(b) and again.calls == []
    assert all(c.cached for row in b for c in row)
    more = ScriptedEngine(lambda m, i: f"new{i}", store=store, quiet=True)
    c = more.generate([msgs("p")], n=4, seed=3)
    assert texts(c) == [["p0", "p1", "new2", "new3"]]
    assert [s for _, s in more.calls] == [2, 3]


def test_cache_key_depends_on_name_and_params(tmp_path):
    store = tmp_path / "c.sqlite"
    ScriptedEngine(lambda m, i: "old", store=store, quiet=True).generate([msgs("p")], seed=1)
    other_name = ScriptedEngine(lambda m, i: "new", store=store, name="other", quiet=True)
    assert texts(other_name.generate([msgs("p")], seed=1)) == [["new"]]
    other_seed = ScriptedEngine(lambda m, i: "new", store=store, quiet=True)
    assert texts(other_seed.generate([msgs("p")], seed=2)) == [["new"]]
    assert other_seed.model_identity == "scripted"


def test_missing_prompt_and_bad_outputs_raise_engine_error():
    with pytest.raises(EngineError, match="no scripted output for the prompt 'zzz'"):
        ScriptedEngine({"a": "x"}, quiet=True).generate([msgs("zzz")])
    with pytest.raises(EngineError, match="must be a callable"):
        ScriptedEngine(42)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="str or a Completion"):
        ScriptedEngine(lambda m, i: 3, quiet=True).generate([msgs("a")])
    with pytest.raises(EngineError, match="no user message"):
        ScriptedEngine({"a": "x"}, quiet=True).generate([[{"role": "system", "content": "s"}]])


def test_get_engine_builds_scripted(tmp_path):
    engine = get_engine("scripted", outputs=["x"], store=tmp_path / "s.sqlite", name="m", quiet=True)
    assert isinstance(engine, ScriptedEngine) and engine.model_identity == "m"
    assert engine.store is not None and texts(engine.generate([msgs("a")])) == [["x"]]
