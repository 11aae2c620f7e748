"""A scripted engine whose outputs a test (or an offline pipeline) decides: deterministic, instant, no model.

It goes through `Engine.generate` like every other engine, so caching and resume behave exactly as they do for
a real model; `.calls` records what the engine itself was asked, which lets tests check the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from metaconf.engines.base import Engine, apply_stop
from metaconf.engines.store import CompletionStore
from metaconf.engines.types import Completion, Messages, PromptRequest, SamplingParams
from metaconf.errors import EngineError

Output = str | Completion
Outputs = Callable[[Messages, int], Output] | Mapping[str, Output | Sequence[Output]] | Sequence[Output]


def last_user_content(messages: Messages) -> str:
    """The content of the last user message (what a dict of scripted outputs is keyed by)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    raise EngineError("scripted engine: a prompt has no user message")


class ScriptedEngine(Engine):
    """Answers from a script instead of a model.

    `outputs` is one of:
    - a callable `(messages, sample_index) -> str | Completion`;
    - a dict from the last user message's content to a str / Completion, or a list of them (sample i takes
      element i % len);
    - a list of str / Completion handed out in order, one per completion the engine is asked for.
    Text is cut at the request's stop strings (as a real engine would); `max_new_tokens` is not applied.
    `delay` seconds are slept per completion produced (to simulate a slow model, e.g. in kill/resume tests).
    """

    def __init__(
        self,
        outputs: Outputs,
        store: CompletionStore | str | Path | None = None,
        delay: float = 0.0,
        name: str = "scripted",
        quiet: bool = False,
        batch_size: int = 8,
    ):
        super().__init__(store=store, quiet=quiet)
        if not (callable(outputs) or isinstance(outputs, (Mapping, list, tuple))):
            raise EngineError(
                f"scripted engine: outputs must be a callable, a dict or a list, not {type(outputs).__name__}"
            )
        if batch_size < 1:
            raise EngineError(f"scripted engine: batch_size must be >= 1, got {batch_size}")
        self.outputs = outputs
        self.delay = float(delay)
        self.name = name
        self.batch_size = batch_size
        self.calls: list[tuple[Messages, int]] = []  # (messages, sample index) of every completion produced
        self._next = 0  # position in a list of outputs
        self._lock = threading.Lock()

    @property
    def model_identity(self) -> str:
        return self.name

    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        results = []
        for request in requests:
            completions = []
            for sample in request.sample_indices:
                if self.delay > 0:
                    time.sleep(self.delay)
                with self._lock:
                    self.calls.append((request.messages, sample))
                    raw = self._lookup(request.messages, sample)
                completions.append(self._to_completion(raw, request.messages, params))
            results.append(completions)
        return results

    def _lookup(self, messages: Messages, sample: int) -> Output:
        outputs = self.outputs
        if isinstance(outputs, Mapping):
            content = last_user_content(messages)
            if content not in outputs:
                raise EngineError(f"scripted engine: no scripted output for the prompt {content[:80]!r}")
            value = outputs[content]
            if isinstance(value, (list, tuple)):
                if not value:
                    raise EngineError(f"scripted engine: empty list of outputs for the prompt {content[:80]!r}")
                return value[sample % len(value)]
            return value
        if isinstance(outputs, (list, tuple)):
            if self._next >= len(outputs):
                raise EngineError(f"scripted engine: all {len(outputs)} scripted outputs are used up")
            value = outputs[self._next]
            self._next += 1
            return value
        return outputs(messages, sample)

    @staticmethod
    def _to_completion(raw: Output, messages: Messages, params: SamplingParams) -> Completion:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        if isinstance(raw, Completion):
            text, cut = apply_stop(raw.text, params.stop)
            return Completion(
                text=text,
                logprobs=raw.logprobs,
                finish_reason="stop" if cut else raw.finish_reason,
                prompt_tokens=raw.prompt_tokens or prompt_tokens,
                completion_tokens=raw.completion_tokens or len(text.split()),
            )
        if not isinstance(raw, str):
            raise EngineError(f"scripted engine: an output must be a str or a Completion, not {type(raw).__name__}")
        text, _ = apply_stop(raw, params.stop)
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(text.split()))
