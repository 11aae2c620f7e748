"""Engine.generate's shared machinery: argument checks, batch-shape checks, progress bar, get_engine."""

import io
import sys

import pytest

from metaconf.engines import ENGINE_KINDS, Completion, get_engine
from metaconf.engines.base import Engine, apply_stop, sample_seed
from metaconf.engines.scripted import ScriptedEngine
from metaconf.errors import ConfigError, EngineError


def msgs(text):
    return [{"role": "user", "content": text}]


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p must be in"),
        ({"logprobs": -1}, "logprobs must be None"),
        ({"stop": [3]}, "stop must be a list of strings"),
    ],
)
def test_bad_sampling_settings_are_one_line(kwargs, field):
    engine = ScriptedEngine(lambda m, i: "x", quiet=True)
    with pytest.raises(ConfigError, match=field):
        engine.generate([msgs("a")], **kwargs)
    assert engine.calls == []


def test_bad_prompts_are_rejected():
    engine = ScriptedEngine(lambda m, i: "x", quiet=True)
    with pytest.raises(EngineError, match="prompt 1 is not a list of chat messages"):
        engine.generate([msgs("a"), "just a string"])  # type: ignore[list-item]


def test_a_single_stop_string_is_accepted():
    engine = ScriptedEngine(lambda m, i: "a.b", quiet=True)
    assert engine.generate([msgs("a")], stop=".")[0][0].text == "a"


def test_empty_prompt_list():
    assert ScriptedEngine(lambda m, i: "x", quiet=True).generate([]) == []


class Broken(Engine):
    name = "broken"

    def __init__(self, drop_prompt: bool):
        super().__init__(quiet=True)
        self.drop_prompt = drop_prompt

    @property
    def model_identity(self):
        return "broken"

    def _generate_batch(self, requests, params):
        out = [[Completion("x") for _ in r.sample_indices] for r in requests]
        if self.drop_prompt:
            return out[:-1]
        out[0] = out[0][:-1]
        return out


@pytest.mark.parametrize(
    "drop_prompt, message",
    [
        (True, "broken: engine returned 1 results for a batch of 2 prompts"),
        (False, "broken: engine returned 1 completions for a prompt that needed 2"),
    ],
)
def test_an_engine_returning_the_wrong_shape_fails_loudly(drop_prompt, message):
    with pytest.raises(EngineError, match=message):
        Broken(drop_prompt).generate([msgs("a"), msgs("b")], n=2)


def test_a_plan_that_skips_or_repeats_a_prompt_fails_loudly():
    class BadPlan(ScriptedEngine):
        def plan_batches(self, requests, params):
            return [[0], [0]]

    engine = BadPlan(lambda m, i: "x", quiet=True)
    with pytest.raises(EngineError, match="every prompt in exactly one batch"):
        engine.generate([msgs("a"), msgs("b")])
    assert engine.calls == []


def test_sample_seed_and_apply_stop():
    assert sample_seed(1, 0) != sample_seed(1, 1) and sample_seed(1, 0) == sample_seed(1, 0)
    assert apply_stop("a\nb###c", ["###", "\n"]) == ("a", True)
    assert apply_stop("abc", ["", "z"]) == ("abc", False)


def test_progress_bar_on_a_terminal_shows_done_total_rate_and_cache_hits(tmp_path, monkeypatch):
    store = tmp_path / "c.sqlite"
    ScriptedEngine(lambda m, i: "one two", store=store, quiet=True).generate([msgs("a")], n=2)
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    ScriptedEngine(lambda m, i: "one two", store=store, batch_size=1).generate(
        [msgs("a"), msgs("b"), msgs("c")], n=2, desc="sampling"
    )
    text = err.getvalue()
    assert "sampling" in text and "6/6" in text and "cache_hits=2" in text and "tok_s=" in text


def test_no_progress_bar_when_quiet_or_not_a_terminal(monkeypatch):
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    ScriptedEngine(lambda m, i: "x", quiet=True).generate([msgs("a")], n=2)
    assert err.getvalue() == ""
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    ScriptedEngine(lambda m, i: "x").generate([msgs("a")], n=2)
    assert plain.getvalue() == ""


def test_progress_bar_is_closed_when_the_engine_fails(monkeypatch):
    err = TTY()
    monkeypatch.setattr(sys, "stderr", err)
    engine = ScriptedEngine(["only one"], batch_size=1)
    with pytest.raises(EngineError):
        engine.generate([msgs("a"), msgs("b")])
    assert "1/2" in err.getvalue()


def test_get_engine_knows_every_kind(monkeypatch, tmp_path):
    import metaconf.engines.hf as hf
    import metaconf.engines.vllm as vllm

    built = {}

    class Fake:
        def __init__(self, **kw):
            built["kw"] = kw

        @classmethod
        def embedded(cls, **kw):
            built["embedded"] = kw
            return "embedded-engine"

    monkeypatch.setattr(hf, "HFEngine", Fake)
    monkeypatch.setattr(vllm, "VLLMEngine", Fake)
    assert get_engine("embedded", store=None) == "embedded-engine" and built["embedded"] == {"store": None}
    assert isinstance(get_engine("hf", model="x"), Fake) and built["kw"] == {"store": None, "model": "x"}
    assert isinstance(get_engine("vllm", model="y", tensor_parallel_size=2), Fake)
    assert built["kw"] == {"store": None, "model": "y", "tensor_parallel_size": 2}
    assert get_engine("openai", base_url="http://h/v1", model="m").model_identity == "openai:http://h/v1#m"
    assert get_engine("scripted", outputs=["x"]).model_identity == "scripted"
    assert set(ENGINE_KINDS) == {"embedded", "hf", "vllm", "openai", "scripted"}


def test_get_engine_unknown_kind():
    with pytest.raises(ConfigError, match="engine: unknown kind 'gpt'; choose one of embedded, hf, vllm"):
        get_engine("gpt")
