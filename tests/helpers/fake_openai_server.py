"""A real, deterministic OpenAI-compatible HTTP server for tests, with injectable faults.

    with FakeOpenAIServer(models=["m"]) as server:
        server.fail_next("429", retry_after=0)      # the next request gets a 429, the one after is served
        engine = OpenAIEngine(base_url=server.url, model="m")

It listens on 127.0.0.1 on an ephemeral port (stdlib `http.server`, one thread per connection) and answers
POST {url}/chat/completions. An answer depends only on (model, messages, seed, choice index), so the same
request always gets the same text. `server.requests` records every request (headers and JSON body).

Faults, consumed one per request in order: "429" (with Retry-After), "500", "503", "hang" (sleeps `hang_s`
before answering, to trip a client timeout), "reset" (closes the connection with a TCP RST), "garbled"
(200 with a body that is not JSON), "badgzip" (200, "Content-Encoding: gzip", a body that is not gzip), "empty"
(200 with no choices), "401", "403", "404", "400".
Extra routes can be added by subclasses or by `server.routes[(method, path)] = handler(server, request) ->
(status, headers, body)` (the training tests' fine-tuning endpoints can live next to these).
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Respond = Callable[[str, list, int, int], str]  # (model, messages, seed, choice index) -> text


def default_respond(model: str, messages: list, seed: int, index: int) -> str:
    """A deterministic answer: the last user message echoed with a digest of (model, messages, seed, index)."""
    content = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    digest = hashlib.sha256(json.dumps([model, messages, seed, index], sort_keys=True).encode()).hexdigest()
    return f"echo {content} | {digest[:8]}"


def fake_logprob(token: str, position: int) -> float:
    """A deterministic negative log-probability for a token."""
    h = int(hashlib.sha256(f"{token}|{position}".encode()).hexdigest()[:6], 16)
    return -round(h / 0xFFFFFF * 3.0, 4)


@dataclass
class Fault:
    kind: str
    retry_after: str | None = None
    message: str = ""


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    fault: str | None = None


@dataclass
class FakeOpenAIServer:
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    respond: Respond = default_respond
    api_key: str | None = None  # when set, requests must carry "Authorization: Bearer <api_key>"
    max_choices: int | None = None  # answer at most this many choices however many were asked for
    hang_s: float = 5.0
    prefix: str = "/v1"

    def __post_init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.requests: list[RecordedRequest] = []
        self.routes: dict[tuple[str, str], Callable[[FakeOpenAIServer, RecordedRequest], tuple]] = {
            ("POST", f"{self.prefix}/chat/completions"): _chat_completions,
            ("GET", f"{self.prefix}/models"): _list_models,
        }
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL a client should use, e.g. http://127.0.0.1:PORT/v1."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    # -- faults -----------------------------------------------------------------------------------------
    def fail_next(self, kind: str, times: int = 1, retry_after: str | float | None = None, message: str = "") -> None:
        """Queue `times` faults of one kind; each is used by one request, in order."""
        with self._lock:
            for _ in range(times):
                self.faults.append(Fault(kind, None if retry_after is None else str(retry_after), message))

    def _take_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The /chat/completions requests received, faulted ones included."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]


def _error(status: int, message: str, kind: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    return status, {"Content-Type": "application/json"}, body


def _list_models(server: FakeOpenAIServer, request: RecordedRequest) -> tuple:
    data = [{"id": m, "object": "model", "owned_by": "fake"} for m in server.models]
    return 200, {"Content-Type": "application/json"}, json.dumps({"object": "list", "data": data}).encode()


def _chat_completions(server: FakeOpenAIServer, request: RecordedRequest) -> tuple:
    body = request.body
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(400, "request body must be a JSON object with messages", "invalid_request_error")
    model = body.get("model")
    if model not in server.models:
        return _error(404, f"The model `{model}` does not exist.", "invalid_request_error")
    n = int(body.get("n", 1))
    seed = int(body.get("seed", 0) or 0)
    max_tokens = int(body.get("max_tokens", body.get("max_completion_tokens", 16)))
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    want_logprobs = bool(body.get("logprobs"))
    top_k = int(body.get("top_logprobs") or 0)
    count = min(n, server.max_choices) if server.max_choices else n
    choices, completion_tokens = [], 0
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    for index in range(count):
        text = server.respond(model, body["messages"], seed, index)
        finish = "stop"
        cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
        words = text.split(" ")
        if len(words) > max_tokens:
            text, finish = " ".join(words[:max_tokens]), "length"
            words = words[:max_tokens]
        completion_tokens += len(words)
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": None,
        }
        if want_logprobs:
            tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
            content = []
            for pos, tok in enumerate(tokens):
                alts = [tok] + [f"{tok}~{j}" for j in range(1, top_k)]
                content.append(
                    {
                        "token": tok,
                        "logprob": fake_logprob(tok, pos),
                        "bytes": list(tok.encode()),
                        "top_logprobs": [
                            {
                                "token": a,
                                "logprob": fake_logprob(a, pos) - (0 if a == tok else 1.0),
                                "bytes": list(a.encode()),
                            }
                            for a in alts[:top_k]
                        ],
                    }
                )
            choice["logprobs"] = {"content": content}
        choices.append(choice)
    payload = {
        "id": f"chatcmpl-{seed}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        fake = self.fake
        route = fake.routes.get((method, self.path))
        fault = fake._take_fault() if route is not None else None
        request = RecordedRequest(method, self.path, dict(self.headers.items()), body, fault.kind if fault else None)
        with fake._lock:
            fake.requests.append(request)
        if route is None:
            return self._send(*_error(404, f"no route {method} {self.path}", "not_found"))
        if fault is not None:
            return self._fault(fault)
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            return self._send(*_error(401, "Incorrect API key provided.", "invalid_request_error"))
        self._send(*route(fake, request))

    def _fault(self, fault: Fault) -> None:
        kind = fault.kind
        if kind == "reset":
            # SO_LINGER with a zero timeout makes close() send a TCP RST instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if kind == "hang":
            time.sleep(self.fake.hang_s)
            self.close_connection = True
            try:
                return self._send(*_error(504, "answered too late", "timeout"))
            except OSError:
                return None
        if kind == "garbled":
            return self._send(200, {"Content-Type": "application/json"}, b'{"choices": [{"message": ')
        if kind == "badgzip":  # claims gzip, is not
            return self._send(200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b'{"choices": []}')
        if kind == "empty":
            return self._send(200, {"Content-Type": "application/json"}, json.dumps({"choices": []}).encode())
        if kind.isdigit():
            status = int(kind)
            _, headers, body = _error(status, fault.message or f"fake error {status}", "fault")
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            return self._send(status, headers, body)
        raise ValueError(f"unknown fault {kind!r}")

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":  # run it by hand: python tests/helpers/fake_openai_server.py
    with FakeOpenAIServer() as srv:
        print(srv.url, flush=True)
        threading.Event().wait()
