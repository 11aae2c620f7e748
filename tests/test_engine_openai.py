"""OpenAIEngine against a real local HTTP server: requests, retries, refusals, partial choices, the API key."""

import asyncio
import json
import logging
import random

import pytest

from helpers.fake_openai_server import FakeOpenAIServer, default_respond
from metaconf.engines import get_engine
from metaconf.engines import openai as openai_mod
from metaconf.engines.openai import OpenAIEngine, build_payload
from metaconf.engines.types import SamplingParams
from metaconf.errors import EngineError
from metaconf.retry import backoff_delay, parse_retry_after

SECRET = "sk-test-DO-NOT-LEAK-1234567890"


def msgs(text):
    return [{"role": "user", "content": text}]


@pytest.fixture
def server():
    with FakeOpenAIServer(models=["m"]) as srv:
        yield srv


@pytest.fixture
def delays(monkeypatch):
    """Record backoff sleeps instead of waiting them out."""
    recorded = []

    async def fake_sleep(seconds):
        recorded.append(seconds)

    monkeypatch.setattr(openai_mod, "_sleep", fake_sleep)
    return recorded


def engine_for(server, **kw):
    kw.setdefault("quiet", True)
    kw.setdefault("backoff_base", 0.01)
    return OpenAIEngine(base_url=server.url, model="m", **kw)


def test_generates_n_completions_with_all_sampling_fields(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    engine = engine_for(server, extra_body={"top_k": 5})
    out = engine.generate(
        [msgs("a"), msgs("b")], n=3, temperature=0.7, top_p=0.9, max_new_tokens=12, stop=["\n"], seed=4
    )
    assert [len(row) for row in out] == [3, 3]
    assert all(c.text.startswith("echo a") for c in out[0]) and len({c.text for c in out[0]}) == 3
    body = server.chat_requests[0].body
    assert body["model"] == "m" and body["n"] == 3 and body["temperature"] == 0.7 and body["top_p"] == 0.9
    assert body["max_tokens"] == 12 and body["stop"] == ["\n"] and isinstance(body["seed"], int)
    assert body["top_k"] == 5 and "logprobs" not in body
    assert "Authorization" not in server.chat_requests[0].headers  # no key set: fine for local servers
    assert out[0][0].prompt_tokens == 1 and sum(c.completion_tokens for c in out[0]) == 12


def test_same_request_same_answers_and_seed_is_per_prompt(server):
    a = engine_for(server).generate([msgs("a"), msgs("b")], n=2, seed=1)
    b = engine_for(server).generate([msgs("a"), msgs("b")], n=2, seed=1)
    c = engine_for(server).generate([msgs("a")], n=2, seed=2)
    assert [[x.text for x in r] for r in a] == [[x.text for x in r] for r in b]
    assert [x.text for x in a[0]] != [x.text for x in c[0]]


def test_logprobs_are_requested_and_filled(server):
    (c,) = engine_for(server).generate([msgs("a b")], n=1, logprobs=3, max_new_tokens=20)[0]
    body = server.chat_requests[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert c.logprobs is not None and "".join(t.token for t in c.logprobs) == c.text
    assert all(len(t.top) == 3 and t.token in t.top for t in c.logprobs)
    assert c.completion_tokens == len(c.logprobs)


def test_max_tokens_gives_finish_reason_length(server):
    (c,) = engine_for(server).generate([msgs("one two three four")], n=1, max_new_tokens=2)[0]
    assert c.finish_reason == "length" and c.text == "echo one"


@pytest.mark.parametrize("fault", ["429", "500", "503", "garbled", "empty", "reset"])
def test_transient_faults_are_retried(server, delays, fault):
    server.fail_next(fault, times=2)
    out = engine_for(server).generate([msgs("a")], n=2, seed=0)
    assert [c.text for c in out[0]] == [
        default_respond("m", msgs("a"), r, i)
        for r, i in [(server.chat_requests[-1].body["seed"], 0), (server.chat_requests[-1].body["seed"], 1)]
    ]
    assert [r.fault for r in server.chat_requests] == [fault, fault, None]
    assert len(delays) == 2


def test_hanging_response_times_out_and_is_retried(delays):
    with FakeOpenAIServer(models=["m"], hang_s=3.0) as server:
        server.fail_next("hang")
        out = engine_for(server, timeout=0.3).generate([msgs("a")], n=1)
        assert out[0][0].text.startswith("echo a")
        assert [r.fault for r in server.chat_requests] == ["hang", None]


def test_retry_after_is_honoured_and_backoff_is_full_jitter(server, delays):
    server.fail_next("429", retry_after=7)
    server.fail_next("503")
    server.fail_next("503")
    engine_for(server, backoff_base=0.5, backoff_max=0.8).generate([msgs("a")])
    assert delays[0] == 7.0
    assert 0.0 <= delays[1] <= 1.0 * 0.5 * 2 and 0.0 <= delays[2] <= 0.8  # attempt 1: <= 1.0, capped at 0.8
    rng = random.Random(0)
    samples = [backoff_delay(3, 0.5, 30.0, rng) for _ in range(200)]
    assert min(samples) >= 0 and max(samples) <= 4.0 and max(samples) > 2.0  # spread over [0, 0.5 * 2**3]
    assert all(backoff_delay(20, 0.5, 30.0, rng) <= 30.0 for _ in range(50))


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past


def test_gives_up_after_max_retries_with_one_line(server, delays):
    server.fail_next("503", times=10)
    with pytest.raises(EngineError) as err:
        engine_for(server, max_retries=2).generate([msgs("a")])
    text = str(err.value)
    assert "after 3 attempts" in text and "503" in text and "\n" not in text
    assert len(server.chat_requests) == 3 and len(delays) == 2


@pytest.mark.parametrize("status", ["400", "401", "403", "404"])
def test_refusals_fail_at_once_naming_server_and_model(server, delays, status):
    server.fail_next(status, message="nope\nsecond line")
    with pytest.raises(EngineError) as err:
        engine_for(server).generate([msgs("a")])
    assert str(err.value) == f"server at {server.url} refused model 'm' ({status}): nope second line"
    assert len(server.chat_requests) == 1 and delays == []


def test_unknown_model_is_a_clear_404(server):
    engine = OpenAIEngine(base_url=server.url, model="nosuch", quiet=True)
    with pytest.raises(EngineError, match=r"refused model 'nosuch' \(404\): The model `nosuch` does not exist"):
        engine.generate([msgs("a")])


def test_fewer_choices_than_asked_are_requested_again():
    with FakeOpenAIServer(models=["m"], max_choices=2) as server:
        out = engine_for(server).generate([msgs("a")], n=5, seed=0)
        assert len(out[0]) == 5
        assert [r.body["n"] for r in server.chat_requests] == [5, 3, 1]
        assert len({r.body["seed"] for r in server.chat_requests}) == 3


def test_concurrency_is_capped(delays):
    import threading
    import time

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(model, messages, seed, index):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return "ok"

    with FakeOpenAIServer(models=["m"], respond=slow) as server:
        out = engine_for(server, concurrency=3).generate([msgs(str(i)) for i in range(12)], n=1)
        assert len(out) == 12 and state["peak"] == 3


def test_api_key_is_sent_but_never_leaks(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MY_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(models=["m"], api_key=SECRET) as server:
        store = tmp_path / "c.sqlite"
        engine = OpenAIEngine(base_url=server.url, model="m", api_key_env="MY_KEY", store=store, quiet=True)
        engine.generate([msgs("a")], n=2)
        assert server.chat_requests[0].headers["Authorization"] == f"Bearer {SECRET}"
        server.fail_next("401", message=f"Incorrect API key provided: {SECRET}")
        with pytest.raises(EngineError) as err:
            engine.generate([msgs("b")])
        assert "(401)" in str(err.value) and SECRET not in str(err.value) and "***" in str(err.value)
        assert SECRET not in repr(engine) and SECRET not in str(vars(engine))
        assert SECRET not in engine.model_identity and SECRET not in caplog.text
        engine.store.close()
        for path in tmp_path.iterdir():
            assert SECRET.encode() not in path.read_bytes(), path
        monkeypatch.delenv("MY_KEY")
        with pytest.raises(EngineError, match=r"\(401\): Incorrect API key"):
            OpenAIEngine(base_url=server.url, model="m", api_key_env="MY_KEY", quiet=True).generate([msgs("c")])


def test_cached_completions_are_not_requested_again(server, tmp_path):
    store = tmp_path / "c.sqlite"
    first = engine_for(server, store=store).generate([msgs("a"), msgs("b")], n=2)
    sent = len(server.chat_requests)
    second = engine_for(server, store=store).generate([msgs("a"), msgs("b"), msgs("c")], n=2)
    assert [[c.text for c in r] for r in second[:2]] == [[c.text for c in r] for r in first]
    assert len(server.chat_requests) == sent + 1 and server.chat_requests[-1].body["messages"] == msgs("c")


def test_identity_and_get_engine(server):
    engine = get_engine("openai", base_url=server.url + "/", model="m", quiet=True)
    assert isinstance(engine, OpenAIEngine) and engine.model_identity == f"openai:{server.url}#m"


def test_works_when_called_inside_an_event_loop(server):
    async def main():
        return engine_for(server).generate([msgs("a")])

    assert asyncio.run(main())[0][0].text.startswith("echo a")


def test_bad_construction_arguments():
    with pytest.raises(EngineError, match="base_url must start with http"):
        OpenAIEngine(base_url="localhost:8000", model="m")
    with pytest.raises(EngineError, match="model is required"):
        OpenAIEngine(base_url="http://x", model="")
    with pytest.raises(EngineError, match="concurrency must be >= 1"):
        OpenAIEngine(base_url="http://x", model="m", concurrency=0)


def test_payload_builder_options():
    params = SamplingParams(n=2, temperature=0.0, logprobs=0, max_new_tokens=5)
    body = build_payload("m", msgs("a"), params, n=2, seed=1, max_tokens_field="max_completion_tokens")
    assert body["logprobs"] is True and "top_logprobs" not in body and "stop" not in body
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body
    json.dumps(body)


def test_connection_refused_is_retried_then_reported(delays):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    engine = OpenAIEngine(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, quiet=True)
    with pytest.raises(EngineError, match=r"after 2 attempts; last error: connection failed \(ConnectError\)"):
        engine.generate([msgs("a")])


def test_guide_goes_where_the_server_takes_it_and_seed_can_be_left_out(server):
    params = SamplingParams(max_new_tokens=5)
    body = build_payload("m", msgs("a"), params, n=1, seed=None, guide=r"[AB]\.", extra_body={"structured_outputs": {}})
    assert body["structured_outputs"] == {"regex": r"[AB]\."} and "seed" not in body
    assert (
        build_payload("m", msgs("a"), params, n=1, seed=3, guide="x", guide_field="guided_regex")["guided_regex"] == "x"
    )
    engine = engine_for(server, send_seed=False)
    assert engine.supports_guide and engine.determinism["per_sample_seeds"] is False
    engine.generate([msgs("a"), msgs("b")], max_new_tokens=4, guide=[r"A|B", None])
    bodies = {r.body["messages"][0]["content"]: r.body for r in server.chat_requests}
    assert bodies["a"]["structured_outputs"] == {"regex": "A|B"} and "structured_outputs" not in bodies["b"]
    assert all("seed" not in b for b in bodies.values())


def test_server_without_structured_outputs_samples_free_with_a_warning(server):
    engine = engine_for(server, guide_field=None)
    with pytest.warns(UserWarning, match="cannot constrain"):
        engine.generate([msgs("a")], max_new_tokens=4, guide=["A|B"])
    assert "structured_outputs" not in server.chat_requests[0].body
