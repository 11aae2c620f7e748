"""The one interface every engine implements, with caching and resumability done once, here.

`Engine.generate` looks every (prompt, sample index) up in the attached `CompletionStore`, asks the engine only
for what is missing, and stores each batch as soon as it is produced. Batches are planned over the whole request
(cached prompts included) so a resumed run sees exactly the batches an uninterrupted run would; each sample's
random seed is derived from (seed, prompt, sample index), never from its position in a batch.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metaconf.engines.capabilities import Capabilities
from metaconf.engines.store import CompletionStore
from metaconf.engines.types import Completion, Messages, PromptRequest, SamplingParams
from metaconf.errors import ConfigError, EngineError


def stable_hash(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def prompt_text(messages: Messages) -> str:
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


def sample_seed(prompt_seed: int, sample_index: int) -> int:
    """The seed of one sample: independent of batch composition and of n."""
    return int(stable_hash(str(prompt_seed), str(sample_index))[:15], 16)


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; returns (text, whether it was cut)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


SEEDED = "each sample has its own seed: the same text on a rerun, a resume or another n"


def determinism_record(engine: str, per_sample_seeds: bool, repeatable: str, **extra: Any) -> dict[str, Any]:
    """The record of what repeats on a rerun (RUN/determinism.json), in one shape for every engine."""
    return {"engine": engine, "per_sample_seeds": per_sample_seeds, **extra, "repeatable": repeatable}


class Engine(ABC):
    """A model that completes chat prompts. Subclasses implement `_generate_batch` (and may plan batches)."""

    name: str = "engine"
    # A cache of lower-layer prefill states shared with engines of the same base model and other adapters (set by
    # the study between conditions); only engines that run the model's layers themselves (hf) use it.
    shared_prefill: Any = None
    # Prompts per batch of the default `plan_batches` (engines take theirs as a constructor argument).
    batch_size: int = 8

    def __init__(self, store: CompletionStore | str | Path | None = None, quiet: bool = False):
        self.store = CompletionStore(store) if isinstance(store, (str, Path)) else store
        self.quiet = quiet

    # -- identity (part of every cache key) ------------------------------------------------------------
    @property
    @abstractmethod
    def model_identity(self) -> str:
        """Names the model's weights (a path + content fingerprint, a hub id + revision, a served model name)."""

    @property
    def adapter_identity(self) -> str:
        """Names the adapter on top of the model, or "" for none."""
        return ""

    @property
    def capabilities(self) -> Capabilities:
        """What this engine can do (engines that can do more override)."""
        return Capabilities()

    @property
    def supports_guide(self) -> bool:
        """Whether `_generate_batch` honours `PromptRequest.guide`. Engines that cannot get the guide dropped with a
        warning (their completions are then cached as free ones, so a later guided engine never reads them as
        guided)."""
        return self.capabilities.guide

    @property
    def determinism(self) -> dict[str, Any]:
        """What repeats on a rerun; a study records it in its run folder (engines that cannot seed override)."""
        return determinism_record(self.name, True, SEEDED)

    # -- what subclasses provide -------------------------------------------------------------------------
    @abstractmethod
    def _generate_batch(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[Completion]]:
        """Completions for each request, one per entry of its `sample_indices`, in that order."""

    def plan_batches(self, requests: list[PromptRequest], params: SamplingParams) -> list[list[int]]:
        """Indices into `requests` grouped into batches. Must depend only on the prompts and params (here: runs of
        `batch_size` in request order)."""
        size = self.batch_size
        return [list(range(i, min(i + size, len(requests)))) for i in range(0, len(requests), size)]

    # -- the public call ---------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[Messages],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 16,
        stop: Sequence[str] | None = None,
        seed: int = 0,
        logprobs: int | None = None,
        desc: str | None = None,
        guide: Sequence[str | None] | None = None,
    ) -> list[list[Completion]]:
        """Per prompt, a list of `n` completions. Served from the store where already generated.

        `guide`: per prompt, a regular expression the whole completion must match (the reply format, with the
        model choosing every answer, number and choice inside it), or None for free text.
        """
        if isinstance(stop, str):
            stop = [stop]
        params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            stop=tuple(stop or ()),
            seed=seed,
            logprobs=logprobs,
        )
        return self.generate_with(prompts, params, desc=desc, guide=guide)

    def cache_key(self, messages: Messages, params: SamplingParams, guide: str | None = None) -> str:
        parts = [self.model_identity, self.adapter_identity, prompt_text(messages), params.key()]
        if guide is not None:  # free completions keep the keys they always had
            parts.append("guide:" + guide)
        return stable_hash(*parts)

    def generate_with(
        self,
        prompts: Sequence[Messages],
        params: SamplingParams,
        desc: str | None = None,
        guide: Sequence[str | None] | None = None,
    ) -> list[list[Completion]]:
        """`generate` with the sampling settings already gathered in a `SamplingParams`."""
        validate_params(params)
        guides = self._checked_guides(prompts, guide)
        for i, messages in enumerate(prompts):
            if not isinstance(messages, (list, tuple)) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            ):
                raise EngineError(
                    f"{self.name}: prompt {i} is not a list of chat messages ({{'role': ..., 'content': ...}})"
                )
        keys = [self.cache_key(list(m), params, g) for m, g in zip(prompts, guides)]
        distinct: dict[str, int] = {}
        for i, key in enumerate(keys):
            distinct.setdefault(key, i)
        found = self.store.get_many(list(distinct), params.n) if self.store else {}
        requests = [
            PromptRequest(
                messages=list(prompts[i]),
                sample_indices=list(range(params.n)),
                seed=int(stable_hash(str(params.seed), prompt_text(list(prompts[i])))[:15], 16),
                guide=guides[i],
            )
            for i in distinct.values()
        ]
        request_keys = list(distinct)
        results: dict[tuple[str, int], Completion] = dict(found)
        total = len(requests) * params.n
        progress = _Progress(total, len(found), desc or self.name, disabled=self.quiet)
        batches = self.plan_batches(requests, params)
        if sorted(i for batch in batches for i in batch) != list(range(len(requests))):
            raise EngineError(f"{self.name}: plan_batches must place every prompt in exactly one batch")
        try:
            for batch in batches:
                todo = []
                for idx in batch:
                    missing = [s for s in requests[idx].sample_indices if (request_keys[idx], s) not in results]
                    if missing:
                        req = requests[idx]
                        todo.append((idx, PromptRequest(req.messages, missing, req.seed, req.guide)))
                if not todo:
                    continue
                outputs = self._generate_batch([r for _, r in todo], params)
                _check_shape(self.name, todo, outputs)
                for comps in outputs:
                    for comp in comps:
                        _make_encodable(comp)
                produced = []
                for (idx, req), comps in zip(todo, outputs):
                    for s, comp in zip(req.sample_indices, comps):
                        results[(request_keys[idx], s)] = comp
                        produced.append((request_keys[idx], s, comp))
                if self.store:
                    self.store.put_many(
                        produced,
                        model=self.model_identity,
                        adapter=self.adapter_identity,
                        params=params.key(),
                        prompts={request_keys[i]: requests[i].messages for i, _ in todo},
                    )
                progress.update(produced)
        finally:
            progress.close()
        return [[results[(key, s)] for s in range(params.n)] for key in keys]

    def _checked_guides(self, prompts: Sequence[Messages], guide: Sequence[str | None] | None) -> list[str | None]:
        """One guide (or None) per prompt; all None where this engine cannot guide, with one warning."""
        if guide is None:
            return [None] * len(prompts)
        guides = list(guide)
        if len(guides) != len(prompts):
            raise ConfigError(f"generate: {len(guides)} guides for {len(prompts)} prompts")
        if not all(g is None or isinstance(g, str) for g in guides):
            raise ConfigError("generate: each guide must be a regular expression (str) or None")
        if any(g is not None for g in guides) and not self.supports_guide:
            warnings.warn(
                f"{self.name}: this engine cannot constrain its output; sampling free text instead of the "
                "guided format",
                stacklevel=3,
            )
            return [None] * len(prompts)
        return guides


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates, e.g. a server's JSON with "\\ud800": unstorable, unwritable
        return text.encode("utf-8", "replace").decode("utf-8")


def _make_encodable(comp: Completion) -> None:
    """Model text is untrusted: make a completion's text and tokens valid UTF-8 before they are stored."""
    comp.text = _encodable(comp.text) if isinstance(comp.text, str) else comp.text
    for tok in comp.logprobs or []:
        tok.token = _encodable(tok.token) if isinstance(tok.token, str) else tok.token
        if tok.top:
            tok.top = {_encodable(k) if isinstance(k, str) else k: v for k, v in tok.top.items()}


def validate_params(params: SamplingParams) -> None:
    """One clear line for sampling settings no engine can honour."""
    problems = []
    if not isinstance(params.n, int) or params.n < 1:
        problems.append(f"n must be an integer >= 1, got {params.n!r}")
    if not isinstance(params.max_new_tokens, int) or params.max_new_tokens < 1:
        problems.append(f"max_new_tokens must be an integer >= 1, got {params.max_new_tokens!r}")
    if not params.temperature >= 0:
        problems.append(f"temperature must be >= 0, got {params.temperature!r}")
    if not 0 < params.top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {params.top_p!r}")
    if params.logprobs is not None and (not isinstance(params.logprobs, int) or params.logprobs < 0):
        problems.append(f"logprobs must be None or an integer >= 0, got {params.logprobs!r}")
    if not all(isinstance(s, str) for s in params.stop):
        problems.append(f"stop must be a list of strings, got {list(params.stop)!r}")
    if problems:
        raise ConfigError("generate: " + "; ".join(problems))


def _check_shape(name: str, todo: list[tuple[int, PromptRequest]], outputs: Any) -> None:
    """An engine bug (wrong number of completions) must fail loudly, never store misattributed samples."""
    if not isinstance(outputs, list) or len(outputs) != len(todo):
        got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
        raise EngineError(f"{name}: engine returned {got} results for a batch of {len(todo)} prompts")
    for (_, req), comps in zip(todo, outputs):
        if len(comps) != len(req.sample_indices) or not all(isinstance(c, Completion) for c in comps):
            raise EngineError(
                f"{name}: engine returned {len(comps)} completions for a prompt that needed {len(req.sample_indices)}"
            )


class _Progress:
    """completions done / total, generated tokens per second and cache hits; silent off a terminal."""

    def __init__(self, total: int, cached: int, desc: str, disabled: bool):
        self.bar = None
        self.tokens = 0
        self.cached = cached
        self.start = time.perf_counter()
        if not disabled and sys.stderr.isatty() and total > cached:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=cached, desc=desc, unit="compl", dynamic_ncols=True)

    def update(self, produced: list[tuple[str, int, Completion]]) -> None:
        self.tokens += sum(c.completion_tokens for _, _, c in produced)
        if self.bar is not None:
            rate = self.tokens / max(time.perf_counter() - self.start, 1e-9)
            self.bar.set_postfix(tok_s=f"{rate:.0f}", cache_hits=self.cached, refresh=False)
            self.bar.update(len(produced))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
