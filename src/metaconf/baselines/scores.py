"""How each baseline turns stored model output into a confidence in [0, 1] (pure functions; docs/baselines.md).

Model output is untrusted: every reader returns None where it cannot read a value, never a guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from metaconf.engines.types import TokenLogprob
from metaconf.tasks.task import get_task

_SPACES = re.compile(r"\s*")
YES, NO = "yes", "no"


def agreement(answer: str | None, samples: Sequence[str | None]) -> float:
    """Share of the sampled answers equal to `answer` (unparseable samples count in n); 0 for no answer."""
    if answer is None or not samples:
        return 0.0
    return sum(a == answer for a in samples) / len(samples)


def answer_token_probability(
    logprobs: Sequence[TokenLogprob] | None, text: str, label: re.Pattern[str] | None = None
) -> float | None:
    """P(answer) = exp(sum of the log-probabilities of the tokens of the answer span).

    The span starts after the answer's `label` and the spaces after it (default: the bundled answer template's
    "Answer:"; at the start when there is no label) and ends at the first line break;
    a token belongs to it when it writes any non-space character of it. None without log-probabilities or
    without an answer span.
    """
    if not logprobs:
        return None
    found = (label or get_task("answer").parser.labels["answer"].find).search(text)
    start = _SPACES.match(text, found.end()).end() if found else 0
    newline = text.find("\n", start)
    end = len(text) if newline < 0 else newline
    if not text[start:end].strip():
        return None
    total, position, used = 0.0, 0, 0
    for token in logprobs:
        piece = token.token if isinstance(token.token, str) else ""
        overlap = piece[max(start - position, 0) : max(min(end - position, len(piece)), 0)]
        if overlap.strip():  # the token writes part of the answer
            if not isinstance(token.logprob, (int, float)) or math.isnan(token.logprob):
                return None
            total += min(float(token.logprob), 0.0)
            used += 1
        position += len(piece)
    return math.exp(total) if used else None


def yes_probability(logprobs: Sequence[TokenLogprob] | None) -> float | None:
    """P("yes") / (P("yes") + P("no")) at the first reply token, from its top log-probabilities (tokens that read
    "yes" / "no" after stripping spaces and case add up); None when neither appears."""
    if not logprobs:
        return None
    first = logprobs[0]
    options = dict(first.top or {})
    options.setdefault(first.token, first.logprob)
    mass = {YES: 0.0, NO: 0.0}
    for token, lp in options.items():
        key = token.strip().lower() if isinstance(token, str) else ""
        if key in mass and isinstance(lp, (int, float)) and not math.isnan(lp):
            mass[key] += math.exp(min(float(lp), 0.0))
    total = mass[YES] + mass[NO]
    return mass[YES] / total if total > 0 else None
