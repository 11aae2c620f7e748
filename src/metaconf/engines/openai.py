"""Any OpenAI-compatible chat server (OpenAI, vLLM serve, llama.cpp, TGI, SGLang...) over HTTP.

Requests run concurrently (a semaphore caps how many are in flight) and are retried (`metaconf.retry`: exponential
backoff, full jitter) on 429 (Retry-After honoured), transient 5xx, timeouts, broken connections and unparseable
answers; a server that refuses the request (400/401/403/404/422) fails at once with one line. The API key is read
from the environment variable `api_key_env` each time a batch starts and is never stored on the engine, logged or
put in an error message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path
from typing import Any

from metaconf.engines.base import Engine, apply_stop, determinism_record, sample_seed
from metaconf.engines.capabilities import Capabilities
from metaconf.engines.store import CompletionStore
from metaconf.engines.types import Completion, Messages, PromptRequest, SamplingParams, TokenLogprob
from metaconf.errors import EngineError
from metaconf.retry import RetriesExhausted, Retryable, RetryPolicy, parse_retry_after, retryable_status
from metaconf.text import redact

SEED_MASK = 0x7FFFFFFF  # servers differ in the seed range they accept; 31 bits is safe everywhere
GUIDE_FIELD = "structured_outputs.regex"  # where vLLM serve (>= 0.12) takes a regex the reply must match


async def _sleep(seconds: float) -> None:
    """Backoff sleep (a module-level function so tests can record the delays instead of waiting)."""
    await asyncio.sleep(seconds)


def build_payload(
    model: str,
    messages: Messages,
    params: SamplingParams,
    n: int,
    seed: int | None,
    extra_body: dict[str, Any] | None = None,
    max_tokens_field: str = "max_tokens",
    guide: str | None = None,
    guide_field: str | None = GUIDE_FIELD,
) -> dict[str, Any]:
    """The JSON body of one /chat/completions request (no `seed` when None). A `guide` regex goes where
    `guide_field` says, a dotted path: vLLM >= 0.12 `structured_outputs.regex`, older vLLM `guided_regex`,
    SGLang `regex`."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "n": n,
        "temperature": params.temperature,
        "top_p": params.top_p,
        max_tokens_field: params.max_new_tokens,
    }
    if seed is not None:
        payload["seed"] = seed
    if params.stop:
        payload["stop"] = list(params.stop)
    if params.logprobs is not None:
        payload["logprobs"] = True
        if params.logprobs > 0:
            payload["top_logprobs"] = params.logprobs
    payload.update(extra_body or {})
    if guide is not None and guide_field:
        *parents, leaf = guide_field.split(".")
        node = payload
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = guide
    return payload


def parse_choices(data: Any, params: SamplingParams) -> list[Completion]:
    """Completions from a /chat/completions answer, in choice order; raises ValueError when malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError("answer has no choices")
    choices = sorted(data["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    total_completion = int(usage.get("completion_tokens") or 0)
    out = []
    for i, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise ValueError("a choice has no message")
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise ValueError("a choice's content is not text")
        logprobs = _parse_logprobs(choice.get("logprobs")) if params.logprobs is not None else None
        text, cut = apply_stop(text, params.stop)
        finish = "length" if choice.get("finish_reason") == "length" and not cut else "stop"
        if logprobs is not None:
            tokens = len(logprobs)
        else:  # usage counts all choices together: share it out, remainder to the first ones
            tokens = total_completion // len(choices) + (1 if i < total_completion % len(choices) else 0)
        out.append(
            Completion(
                text=text,
                logprobs=logprobs,
                finish_reason=finish,
                prompt_tokens=prompt_tokens,
                completion_tokens=tokens,
            )
        )
    return out


def _parse_logprobs(block: Any) -> list[TokenLogprob] | None:
    if not isinstance(block, dict) or not isinstance(block.get("content"), list):
        return None
    result = []
    for entry in block["content"]:
        top = {t["token"]: float(t["logprob"]) for t in entry.get("top_logprobs") or []}
        result.append(TokenLogprob(token=entry["token"], logprob=float(entry["logprob"]), top=top))
    return result


def _error_message(response: Any) -> str:
    """The server's own error text, on one line and short."""
    try:
        data = response.json()
    except ValueError:
        data = None
    message = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = err.get("message")
        elif isinstance(err, str):
            message = err
        message = message or data.get("detail") or data.get("message")
    if not isinstance(message, str) or not message:
        message = response.text or response.reason_phrase or ""
    return " ".join(str(message).split())[:300]


class OpenAIEngine(Engine):
    """Chat completions from an OpenAI-compatible server at `base_url` (e.g. http://localhost:8000/v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        max_tokens_field: str = "max_tokens",
        batch_size: int = 64,
        guide_field: str | None = GUIDE_FIELD,
        send_seed: bool = True,
        store: CompletionStore | str | Path | None = None,
        quiet: bool = False,
    ):
        """`guide_field`: where a guided-decoding regex goes in the request (None: the server cannot guide;
        sample free text with a warning). `send_seed=False` for servers that fail on a per-request seed (vLLM
        serve on its CPU backend)."""
        super().__init__(store=store, quiet=quiet)
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise EngineError(f"openai engine: base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise EngineError("openai engine: model is required (the name the server knows the model by)")
        for field_name, value in (("concurrency", concurrency), ("batch_size", batch_size)):
            if value < 1:
                raise EngineError(f"openai engine: {field_name} must be >= 1, got {value}")
        if max_retries < 0:
            raise EngineError(f"openai engine: max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.retry = RetryPolicy(max_retries=max_retries, base=backoff_base, cap=backoff_max)
        self.timeout = timeout
        self.extra_body = dict(extra_body or {})
        self.max_tokens_field = max_tokens_field
        self.batch_size = batch_size
        self.guide_field = guide_field or None
        self.send_seed = send_seed
        self.name = f"openai:{model}"

    def __repr__(self) -> str:
        url = redact(self.base_url)
        return f"OpenAIEngine(base_url={url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    @property
    def model_identity(self) -> str:
        return f"openai:{redact(self.base_url)}#{self.model}"  # stored in completions.sqlite: no password

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(guide=self.guide_field is not None, per_sample_seeds=self.send_seed, adapters="served")

    @property
    def determinism(self) -> dict[str, Any]:
        if self.send_seed:
            repeatable = (
                "a seed is sent with each request; the text repeats only where the server honours seeds (vLLM on "
                "GPUs does; hosted APIs at best mostly)"
            )
            return determinism_record("openai", True, repeatable)
        return determinism_record("openai", False, "no seed is sent (send_seed=false): samples differ between runs")

    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run_batch(requests, params))
        # called from inside an event loop (a notebook, an async app): run ours in a worker thread
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._run_batch(requests, params)).result()

    async def _run_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        import httpx

        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        semaphore = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout), limits=limits) as client:
            tasks = [asyncio.create_task(self._complete(client, semaphore, r, params, key)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    async def _complete(
        self, client: Any, semaphore: asyncio.Semaphore, request: PromptRequest, params: SamplingParams, key: str | None
    ) -> list[Completion]:
        """All the samples one prompt still needs; asks again for the rest when a server returns fewer choices."""
        wanted = len(request.sample_indices)
        got: list[Completion] = []
        while len(got) < wanted:
            first = request.sample_indices[len(got)]
            seed = sample_seed(request.seed, first) & SEED_MASK if self.send_seed else None
            payload = build_payload(
                self.model,
                request.messages,
                params,
                n=wanted - len(got),
                seed=seed,
                extra_body=self.extra_body,
                max_tokens_field=self.max_tokens_field,
                guide=request.guide,
                guide_field=self.guide_field,
            )
            got.extend(await self._post(client, semaphore, payload, params, key))
        return got[:wanted]

    async def _post(
        self,
        client: Any,
        semaphore: asyncio.Semaphore,
        payload: dict[str, Any],
        params: SamplingParams,
        key: str | None,
    ) -> list[Completion]:
        import httpx

        url = f"{self.base_url}/chat/completions"

        async def attempt() -> list[Completion]:
            try:
                async with semaphore:
                    response = await client.post(url, json=payload)
            except httpx.TimeoutException:
                raise Retryable(f"no answer within {self.timeout:g} s") from None
            except httpx.TransportError as exc:
                raise Retryable(f"connection failed ({type(exc).__name__})") from None
            except httpx.DecodingError:  # e.g. "Content-Encoding: gzip" on a body that is not gzip
                raise Retryable("a reply body that could not be decoded (its Content-Encoding is wrong)") from None
            if response.status_code == 200:
                try:
                    return parse_choices(response.json(), params)
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise Retryable(f"unparseable answer ({exc})") from None
            message = _error_message(response)
            if retryable_status(response.status_code):
                raise Retryable(f"HTTP {response.status_code}: {message}", parse_retry_after(response.headers))
            raise EngineError(
                self._scrub(
                    f"server at {self.base_url} refused model {self.model!r} ({response.status_code}): {message}", key
                )
            )

        try:
            return await self.retry.acall(attempt, sleep=_sleep)
        except RetriesExhausted as exc:
            raise EngineError(
                self._scrub(f"server at {self.base_url} failed for model {self.model!r} {exc}", key)
            ) from None

    @staticmethod
    def _scrub(message: str, key: str | None) -> str:
        """Never let the API key reach an error message, even when a server echoes it back."""
        return redact(message.replace(key, "***") if key else message)
