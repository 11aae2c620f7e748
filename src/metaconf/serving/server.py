"""`metaconf serve`: one condition of a run behind an OpenAI-compatible HTTP API, with calibrated confidence and
abstention.

`POST /v1/chat/completions` takes the last user message as an open question, answers it through the run's engine
in its single-task format (guided wherever the evaluation guides, so the confidence is always readable), and
returns the answer as the message with a `metaconf` object beside `choices`: `confidence` (calibrated when asked
and fitted, else stated), `stated_confidence`, `calibrated`, `abstained` and `condition`. Below `abstain_below`
the message says that the model abstains; the answer stays in the object. `GET /v1/models` names the condition,
`GET /health` says whether it is up. Requests go through one `Batcher` (batching.py) to the engine's thread.

Safety: loopback by default; with `METACONF_SERVE_TOKEN` set every `/v1` request needs `Authorization: Bearer
<token>` (the token is compared in constant time and never logged); bodies, messages, queue and time per request
are bounded; every refusal is a JSON error in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations (`request: Request`, imported
# inside `create_app` so that the CLI loads without FastAPI), and string annotations would not resolve there.
import asyncio
import hmac
import ipaddress
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from metaconf.serving.ask import Asker, AskResult, as_question
from metaconf.serving.batching import Batcher, Closed, QueueFull

TOKEN_ENV = "METACONF_SERVE_TOKEN"


class ServeOptions(BaseModel):
    """Everything `metaconf serve` takes (flags, or the same fields in a `--config` YAML file)."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="A run folder made by `metaconf run` / `metaconf demo`.")
    condition: str = Field("multitask", description="Which condition answers (also the served model's name).")
    calibrated: bool = Field(False, description="Map the stated confidence through the run's fitted recalibration.")
    calibration: Literal["isotonic", "platt"] = Field("isotonic", description="Which fitted map --calibrated applies.")
    abstain_below: float | None = Field(
        None, ge=0, le=1, description="Abstain when the confidence (calibrated with --calibrated) is below this."
    )
    host: str = Field("127.0.0.1", description="Address to listen on (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on (0: any free port).")
    max_batch: int = Field(32, ge=1, le=4096, description="Most requests answered in one engine call.")
    max_wait_ms: float = Field(
        10.0,
        ge=0,
        le=60_000,
        description="A batch short of the requests it expects (the clients last answered and those waiting) "
        "waits for them at most 20x this; a lone client waits only for its first answer.",
    )
    max_queue: int = Field(256, ge=1, le=1_000_000, description="Most requests waiting; more are refused with 429.")
    max_body_bytes: int = Field(
        65536, ge=1024, le=64 * 1024 * 1024, description="Largest request body, in bytes (413 above)."
    )
    max_message_chars: int = Field(
        8000, ge=1, le=1_000_000, description="Longest message content, in characters (400 above)."
    )
    timeout: float = Field(120.0, gt=0, le=86_400, description="Seconds a request may wait for its answer (504 after).")
    cache: bool = Field(
        False, description="Use the run's completion store: repeated questions cost nothing, new answers are kept."
    )
    quiet: bool = Field(False, description="No access log.")


class ServeError(Exception):
    """A refusal, answered as an OpenAI-shaped JSON error."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape (what its client raises as APIStatusError with `.body`)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The content as text (the text parts of a list of parts, joined)."""
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The fields of a chat completion request metaconf reads; the rest (temperature, max_tokens, ...) are accepted
    and ignored: the run's evaluation settings decide how the model samples."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    n: int | None = 1


def abstention_text(confidence: float | None, threshold: float) -> str:
    said = "no readable confidence" if confidence is None else f"{confidence * 100:.0f}% confidence"
    return f"I abstain: {said}, below the {threshold * 100:.0f}% needed to answer."


def reply(result: AskResult, options: ServeOptions, calibrated: bool) -> dict[str, Any]:
    """The chat completion response for one answer, with the `metaconf` object."""
    threshold = options.abstain_below
    abstained = threshold is not None and (result.confidence is None or result.confidence < threshold)
    content = abstention_text(result.confidence, threshold) if abstained else (result.answer or "")
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": options.condition,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "metaconf": {
            "answer": result.answer or "",
            "confidence": result.confidence,
            "stated_confidence": result.stated_confidence,
            "calibrated": calibrated,
            "abstained": abstained,
            "abstain_below": threshold,
            "condition": result.condition,
            "calibration": result.calibration,
        },
    }


def question_of(request: ChatRequest, options: ServeOptions) -> Any:
    """The question a request asks: its last user message (earlier turns and system messages are not read: the
    run's template sets the system prompt and the model was trained on single questions)."""
    if request.model != options.condition:
        raise ServeError(
            404,
            f"model {request.model!r} not found; this server serves {options.condition!r}",
            "invalid_request_error",
            "model_not_found",
        )
    if request.stream:
        raise ServeError(400, "stream: streaming is not supported; ask with stream false", code="unsupported")
    if request.n not in (None, 1):
        raise ServeError(400, "n: only one choice per request (n = 1)", code="unsupported")
    for i, message in enumerate(request.messages):
        if len(message.text()) > options.max_message_chars:
            raise ServeError(
                400,
                f"messages.{i}.content: longer than {options.max_message_chars} characters",
                code="message_too_long",
            )
    users = [m for m in request.messages if m.role == "user"]
    if not users or not users[-1].text().strip():
        raise ServeError(400, "messages: no user message with text to answer", code="no_question")
    return as_question(users[-1].text())


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes without reading further."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ServeError(413, f"request body over {limit} bytes", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ServeError(413, f"request body over {limit} bytes", code="body_too_large")
    return bytes(body)


def parse_request(body: bytes) -> ChatRequest:
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ServeError(400, f"{where}: {first['msg']}", code="invalid_body") from None


def check_token(request: Any, token: str | None) -> None:
    """With a token set, the request must carry `Authorization: Bearer <token>` (compared in constant time)."""
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ServeError(401, "missing or wrong bearer token", "authentication_error", "invalid_api_key")


def _answer_errors_as_openai(app: Any) -> None:
    """Every refusal (ours, FastAPI's 404/405, a malformed request) as JSON in OpenAI's error shape."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(ServeError)
    async def refused(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.kind, exc.code), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(str(exc.errors()[0].get("msg")), "invalid_request_error"), status_code=400)


def create_app(asker: Asker, options: ServeOptions, token: str | None = None) -> Any:
    """The FastAPI app serving `asker`; its lifespan starts the engine's worker and, on shutdown, answers what is
    queued before stopping. `app.state.batcher` is the batching queue (its `batch_sizes` show the batching)."""
    from fastapi import FastAPI, Request

    batcher = Batcher(asker.answer, options.max_batch, options.max_wait_ms / 1000, options.max_queue)
    calibrated = asker.mapping is not None

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)

    app = FastAPI(title="metaconf serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    _answer_errors_as_openai(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        sizes = batcher.batch_sizes  # how well requests are batched: answered / batches
        answered = sum(size * count for size, count in sizes.items())
        batches = {"batches": sum(sizes.values()), "answered": answered, "largest": max(sizes, default=0)}
        return {"status": "ok", "condition": options.condition, "calibrated": calibrated, **batches}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_token(request, token)
        entry = {"id": options.condition, "object": "model", "created": 0, "owned_by": "metaconf"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        check_token(request, token)
        question = question_of(parse_request(await read_body(request, options.max_body_bytes)), options)
        try:
            result = await asyncio.wait_for(batcher.submit(question), options.timeout)
        except QueueFull as exc:
            raise ServeError(
                429, f"too many requests waiting ({exc}); retry later", "rate_limit_error", "queue_full"
            ) from None
        except Closed:
            raise ServeError(503, "the server is shutting down", "server_error", "shutting_down") from None
        except TimeoutError:
            raise ServeError(504, f"no answer within {options.timeout:g} s", "timeout_error", "timeout") from None
        except Exception as exc:  # the engine failed: a server error, never the request's fault
            raise ServeError(500, f"the engine failed: {type(exc).__name__}", "server_error", "engine_error") from exc
        return reply(result, options, calibrated)

    return app


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(options: ServeOptions, engine: Any = None) -> int:
    """Open the run's condition, build the engine, and serve until SIGINT/SIGTERM (requests in flight are
    answered first)."""
    import uvicorn

    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(options.host) and token is None:
        print(
            f"metaconf serve: warning: listening on {options.host} without a token (set {TOKEN_ENV})", file=sys.stderr
        )
    asker = Asker(
        options.run,
        options.condition,
        calibrated=options.calibrated,
        calibration=options.calibration,
        quiet=True,
        engine=engine,
    )
    if not options.cache:
        asker.engine.store = None  # a server does not grow the run folder with every question asked
    asker.warm_up()
    app = create_app(asker, options, token)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        access_log=not options.quiet,
        log_level="warning" if options.quiet else "info",
        timeout_graceful_shutdown=int(options.timeout) + 5,
    )
    server = uvicorn.Server(config)
    print(
        f"metaconf serve: {options.run} condition {options.condition!r} on http://{options.host}:{options.port}"
        f"{' (bearer token required)' if token else ''}",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0
