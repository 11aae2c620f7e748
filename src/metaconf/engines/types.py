"""The values engines exchange: sampling settings, prompts and completions (shared by engines and the store)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `n` is not part of a sample's identity: sample 3 of n=5 equals sample 3 of n=10."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: int | None = None  # how many top alternatives to return per generated token; None: no logprobs

    def key(self) -> str:
        fields = asdict(self)
        fields.pop("n")
        fields["stop"] = list(self.stop)
        return json.dumps(fields, sort_keys=True)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)  # the most likely tokens at this position


@dataclass
class Completion:
    text: str
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str = "stop"  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cached")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], cached: bool = False) -> Completion:
        lps = d.get("logprobs")
        return cls(
            text=d["text"],
            logprobs=[TokenLogprob(**t) for t in lps] if lps is not None else None,
            finish_reason=d.get("finish_reason", "stop"),
            prompt_tokens=d.get("prompt_tokens", 0),
            completion_tokens=d.get("completion_tokens", 0),
            cached=cached,
        )


@dataclass
class PromptRequest:
    """One distinct prompt and the sample indices still wanted for it."""

    messages: Messages
    sample_indices: list[int]
    seed: int  # derived from (params.seed, prompt); sample i uses sample_seed(seed, i)
    guide: str | None = None  # a regular expression the whole completion must match (guided decoding); None: free
