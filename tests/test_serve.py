"""`metaconf serve`: a run's condition behind an OpenAI-compatible API, over real loopback HTTP (uvicorn in a
thread, or `metaconf serve` in a subprocess), answered by the scripted engine or the tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn  # the `serve` extra (installed by `make install`): missing, the tests fail, not skip

from helpers.study import SMALL, ScriptedStudy, scripted_run
from metaconf.baselines import apply_map
from metaconf.cli import main
from metaconf.engines.scripted import ScriptedEngine
from metaconf.io import read_json
from metaconf.serving.ask import Asker
from metaconf.serving.server import ServeOptions, create_app
from metaconf.study.config import parse_config

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return scripted_run(tmp_path_factory.mktemp("serve"))


def echo(messages, sample_index):
    """A fake model that answers question 'Qn ...' with n and states confidence n % 100 (so each reply can be
    checked against its question)."""
    n = int(re.search(r"Q(\d+)", messages[-1]["content"]).group(1))
    return f"Answer: {n}\nConfidence: {n % 100}"


def scripted(delay=0.0, outputs=echo):
    return ScriptedEngine(outputs, name="scripted-serve", quiet=True, delay=delay)


@contextlib.contextmanager
def served(asker, **options):
    """`create_app` under a real uvicorn on a free loopback port, in a thread; yields (base URL, app)."""
    token = options.pop("token", None)
    app = create_app(asker, ServeOptions(run=asker.run_dir, condition=asker.condition, **options), token)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join()


def ask_body(text, model="base", **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_response_shape_models_and_health(run_dir):
    asker = Asker(run_dir, "base", engine=scripted())
    with served(asker) as (url, _):
        r = httpx.post(f"{url}/v1/chat/completions", json=ask_body("Q42: what is it?"))
        assert r.status_code == 200
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == "base" and body["id"].startswith("chatcmpl-")
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "42"}
        assert body["metaconf"] == {
            "answer": "42",
            "confidence": 0.42,
            "stated_confidence": 0.42,
            "calibrated": False,
            "abstained": False,
            "abstain_below": None,
            "condition": "base",
            "calibration": None,
        }
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "base"
        assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_the_openai_client_works_unchanged(run_dir):
    openai = pytest.importorskip("openai")
    asker = Asker(run_dir, "base", engine=scripted())
    with served(asker) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        response = client.chat.completions.create(
            model="base", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q7?"}]
        )
        assert response.choices[0].message.content == "7"
        assert response.metaconf["confidence"] == 0.07 and response.metaconf["abstained"] is False
        assert [m.id for m in client.models.list()] == ["base"]
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(model="other", messages=[{"role": "user", "content": "Q1"}])
        assert err.value.code == "model_not_found"


def test_calibration_and_abstention(run_dir):
    isotonic = read_json(run_dir / "baselines" / "recalibration.json")["maps"]["base"]["isotonic"]
    asker = Asker(run_dir, "base", calibrated=True, engine=scripted())
    threshold = 0.5
    with served(asker, abstain_below=threshold) as (url, _):
        for n in (10, 95):
            body = httpx.post(f"{url}/v1/chat/completions", json=ask_body(f"Q{n}")).json()
            meta = body["metaconf"]
            assert meta["calibrated"] is True and meta["calibration"] == "isotonic"
            assert meta["stated_confidence"] == n / 100
            assert meta["confidence"] == pytest.approx(apply_map(isotonic, n / 100))
            assert meta["abstained"] is (meta["confidence"] < threshold)
            assert meta["answer"] == str(n)  # the answer stays in the object when the model abstains
            content = body["choices"][0]["message"]["content"]
            assert content.startswith("I abstain") if meta["abstained"] else content == str(n)
    # the stated confidence decides without --calibrated
    with served(Asker(run_dir, "base", engine=scripted()), abstain_below=0.5) as (url, _):
        low, high = (httpx.post(f"{url}/v1/chat/completions", json=ask_body(f"Q{n}")).json() for n in (30, 70))
        assert low["metaconf"]["abstained"] and not high["metaconf"]["abstained"]
        assert low["choices"][0]["message"]["content"] == "I abstain: 30% confidence, below the 50% needed to answer."


def error_of(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def test_bad_requests_get_openai_shaped_errors(run_dir):
    asker = Asker(run_dir, "base", engine=scripted())
    with served(asker, max_body_bytes=2048, max_message_chars=100) as (url, _):
        post = functools_post(url)
        assert error_of(post(content=b"{not json"), 400)["code"] == "invalid_body"
        assert "messages" in error_of(post(json={"model": "base"}), 400)["message"]
        assert error_of(post(json=ask_body("Q1", model="nope")), 404)["code"] == "model_not_found"
        assert error_of(post(json=ask_body("Q1", stream=True)), 400)["code"] == "unsupported"
        assert error_of(post(json=ask_body("Q1", n=3)), 400)["code"] == "unsupported"
        assert error_of(post(json=ask_body("Q1" + "x" * 100)), 400)["code"] == "message_too_long"
        assert error_of(post(json=ask_body("Q1" + "x" * 3000)), 413)["code"] == "body_too_large"
        only_system = {"model": "base", "messages": [{"role": "system", "content": "hi"}]}
        assert error_of(post(json=only_system), 400)["code"] == "no_question"
        assert error_of(httpx.get(f"{url}/v2/nothing"), 404)["type"] == "not_found_error"
        assert post(json=ask_body("Q3")).status_code == 200  # and the server still answers


def functools_post(url):
    return lambda **kw: httpx.post(f"{url}/v1/chat/completions", **kw)


def test_bearer_token(run_dir):
    asker = Asker(run_dir, "base", engine=scripted())
    with served(asker, token="s3cret") as (url, _):
        post = functools_post(url)
        assert error_of(post(json=ask_body("Q1")), 401)["type"] == "authentication_error"
        assert error_of(post(json=ask_body("Q1"), headers={"Authorization": "Bearer wrong"}), 401)
        assert error_of(httpx.get(f"{url}/v1/models"), 401)
        assert post(json=ask_body("Q1"), headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200  # says nothing but "up"


class Gate:
    """Answers only when opened: `entered` is set once the engine thread holds a batch."""

    def __init__(self):
        self.entered, self.opened = threading.Event(), threading.Event()

    def __call__(self, messages, sample_index):
        self.entered.set()
        assert self.opened.wait(30)
        return echo(messages, sample_index)


def test_a_full_queue_answers_429_and_a_slow_answer_504(run_dir):
    gate = Gate()
    asker = Asker(run_dir, "base", engine=scripted(outputs=gate))
    with served(asker, max_batch=1, max_queue=1, timeout=1.0) as (url, app):
        post = functools_post(url)
        with httpx.Client(timeout=30) as client:
            pool = __import__("concurrent.futures").futures.ThreadPoolExecutor(4)
            first = pool.submit(client.post, f"{url}/v1/chat/completions", json=ask_body("Q1"))
            assert gate.entered.wait(10)  # the engine holds Q1
            second = pool.submit(client.post, f"{url}/v1/chat/completions", json=ask_body("Q2"))
            while app.state.batcher._queue.qsize() < 1:  # Q2 waits in the queue (its only place)
                time.sleep(0.01)
            assert error_of(post(json=ask_body("Q3")), 429)["code"] == "queue_full"
            assert error_of(first.result(), 504)["code"] == "timeout"
            assert error_of(second.result(), 504)["code"] == "timeout"
            gate.opened.set()
            assert post(json=ask_body("Q4")).json()["metaconf"]["answer"] == "4"


async def _client(url, client_id, rounds, client):
    answers = []
    for k in range(rounds):
        n = client_id * 100 + k
        r = await client.post(f"{url}/v1/chat/completions", json=ask_body(f"Q{n}: answer"))
        answers.append((n, r.status_code, r.json()))
    return answers


@pytest.mark.parametrize("clients, rounds", [(64, 4), (256, 1)])
def test_load_every_request_answered_once_and_batched(run_dir, clients, rounds):
    """64 clients x 4 requests, and 256 at once, on loopback: 256 answers, each the right one; the engine saw
    batches."""
    engine = scripted(delay=0.002)
    asker = Asker(run_dir, "base", engine=engine)
    with served(asker, max_batch=32, max_wait_ms=5) as (url, app):

        async def load():
            limits = httpx.Limits(max_connections=clients)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                return await asyncio.gather(*(_client(url, c, rounds, client) for c in range(clients)))

        results = [row for rows in asyncio.run(load()) for row in rows]
        sizes = app.state.batcher.batch_sizes
    assert len(results) == 256 and all(status == 200 for _, status, _ in results)
    assert all(body["metaconf"]["answer"] == str(n) for n, _, body in results)
    assert len({body["id"] for _, _, body in results}) == 256
    assert sum(size * count for size, count in sizes.items()) == 256  # each answered once, none lost
    assert max(sizes) > 1
    assert len(engine.calls) == 256  # every question reached the engine once (no store, none repeated)


def test_serve_options_from_a_config_file(run_dir, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("metaconf.serving.server.serve", lambda options: seen.append(options) or 0)
    config = tmp_path / "serve.yaml"
    config.write_text(f"run: {run_dir}\ncondition: base\nabstain_below: 0.6\nmax_batch: 8\n")
    assert main(["serve", "--config", str(config), "--port", "9001"]) == 0
    (options,) = seen
    assert (options.condition, options.abstain_below, options.max_batch, options.port) == ("base", 0.6, 8, 9001)
    assert options.host == "127.0.0.1"
    assert main(["serve", "--run", str(run_dir), "--abstain-below", "2"]) == 2


SERVER = """
import sys
from pathlib import Path
from helpers.study import scripted_answer
from metaconf.cli import main
from metaconf.engines.scripted import ScriptedEngine
from metaconf.study.runner import Study


class Slow(ScriptedEngine):  # 0.5 s a completion; writes each batch's size where the test can see it
    def _generate_batch(self, requests, params):
        with open(sys.argv[1], "a") as f:
            f.write(f"{len(requests)}\\n")
        return super()._generate_batch(requests, params)


Study.engine = lambda self, condition="base": Slow(scripted_answer, delay=0.5, name="slow", quiet=True)
sys.exit(main(sys.argv[2:]))
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_finishes_requests_in_flight(run_dir, tmp_path):
    """A real `metaconf serve` process: SIGTERM while 6 requests wait; all 6 are answered, then it ends. The
    token from the environment is required and appears in none of its output."""
    script = tmp_path / "serve.py"
    script.write_text(SERVER)
    port = free_port()
    env = {**os.environ, "METACONF_SERVE_TOKEN": "tok-123456", "PYTHONPATH": f"{TESTS.parent / 'src'}:{TESTS}"}
    batches = tmp_path / "batches.txt"
    argv = [sys.executable, str(script), str(batches), "serve", "--run", str(run_dir), "--condition", "base"]
    argv += ["--port", str(port), "--max-batch", "6", "--max-wait-ms", "5000"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer tok-123456"}
    try:
        for _ in range(600):
            assert proc.poll() is None, proc.communicate()[1].decode()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        pool = __import__("concurrent.futures").futures.ThreadPoolExecutor(6)
        futures = [
            pool.submit(
                httpx.post,
                f"{url}/v1/chat/completions",
                json=ask_body(f"What is {i} + 7?"),
                headers=headers,
                timeout=60,
            )
            for i in range(6)
        ]
        while not batches.is_file() or batches.read_text() != "6\n":  # all six in one batch: 3 s of work
            assert proc.poll() is None and not any(f.done() for f in futures)
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        replies = [f.result() for f in futures]
        assert [r.status_code for r in replies] == [200] * 6
        assert all(r.json()["metaconf"]["answer"] == "12" for r in replies)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn finishes, then re-raises the signal so the process ends as SIGTERM says (its documented behaviour)
    assert proc.returncode == -signal.SIGTERM and b"Application shutdown complete" in err, err.decode()
    assert b"tok-123456" not in out + err
    assert b"bearer token required" in err


def test_the_tiny_model_answers_with_a_readable_confidence(tmp_path, tiny_model):
    """The real hf engine, built from the run's config, guided by the run's Task: the confidence is always read."""
    raw = {**SMALL, "conditions": ["base"], "model": {"engine": "hf", "name": str(tiny_model)}}
    run = tmp_path / "run"
    ScriptedStudy(parse_config(raw), run, quiet=True).run(("data",))  # a run folder; serving needs no more
    asker = Asker(run, "base")
    asker.warm_up()
    assert asker.sampling.guided
    with served(asker, abstain_below=1.0) as (url, app):
        bodies = [
            httpx.post(f"{url}/v1/chat/completions", json=ask_body(q), timeout=120).json()
            for q in ("How many legs has a spider?", "What is the capital of France?")
        ]
    for body in bodies:
        meta = body["metaconf"]
        assert 0.0 <= meta["confidence"] <= 1.0 and meta["abstained"] is (meta["confidence"] < 1.0)
        assert json.dumps(body)  # plain JSON


def test_an_engine_failure_is_a_500_and_the_server_goes_on(run_dir):
    def failing(messages, sample_index):
        if "Q666" in messages[-1]["content"]:
            raise RuntimeError("the model broke")
        return echo(messages, sample_index)

    with served(Asker(run_dir, "base", engine=scripted(outputs=failing))) as (url, _):
        post = functools_post(url)
        error = error_of(post(json=ask_body("Q666")), 500)
        assert error["code"] == "engine_error" and "RuntimeError" in error["message"]
        assert post(json=ask_body("Q5")).json()["metaconf"]["answer"] == "5"
