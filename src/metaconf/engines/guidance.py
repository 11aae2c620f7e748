"""Guided decoding for the hf engine: the tokens each row may take next, from llguidance matchers."""

from __future__ import annotations

from typing import Any

from metaconf.errors import EngineError


class Guidance:
    """llguidance matchers for guided rows: one compiled grammar per distinct guide, one matcher per row.

    Why llguidance (docs/engines.md): a small self-contained wheel (no torch pin, so it never fights the installed
    torch), regexes compile in well under a millisecond, and masks are computed on native threads at about 50
    microseconds per row and step, so the mask costs little next to a forward pass even on CPU.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, eos_ids: list[int]):
        import llguidance
        import llguidance.hf

        try:
            self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos_ids)
        except ValueError as e:
            raise EngineError(f"hf: guided decoding needs a fast tokenizer ({e})") from None
        self.vocab_size = vocab_size
        self.executor = llguidance.LLExecutor()
        self.grammars: dict[str, Any] = {}  # guide -> a fresh matcher to copy

    def matcher(self, guide: str) -> Any:
        import llguidance

        base = self.grammars.get(guide)
        if base is None:
            base = llguidance.LLMatcher(self.tokenizer, llguidance.LLMatcher.grammar_from_regex(guide), log_level=0)
            if base.is_error():
                raise EngineError(f"hf: invalid guide {guide!r}: {base.get_error()}")
            self.grammars[guide] = base
        return base.deep_copy()

    def matchers(self, row_guides: list[str | None]) -> RowGuides:
        return RowGuides(self, [self.matcher(g) if g is not None else None for g in row_guides])


class RowGuides:
    """The matchers of one batch's rows (None: a free row), and the per-step mask."""

    def __init__(self, guidance: Guidance, matchers: list[Any]):
        import torch

        self.g = guidance
        self.rows = matchers
        words = (guidance.vocab_size + 31) // 32
        self.bitmask = torch.full((len(matchers), words), -1, dtype=torch.int32)

    def mask(self, logits: Any, rows: list[int | None]) -> Any:
        """`logits` (one line per entry of `rows`) with the tokens each guided row may not take set to -inf."""
        import llguidance.torch
        import numpy as np
        import torch

        todo = [(self.rows[row], j) for j, row in enumerate(rows) if row is not None and self.rows[row] is not None]
        if not todo:
            return logits
        bitmask = self.bitmask[: len(rows)]
        bitmask.fill_(-1)
        llguidance.torch.fill_next_token_bitmask_par(self.g.executor, todo, bitmask)
        # One bit per token, least significant first: unpack bytes to a boolean "blocked" matrix in C.
        blocked = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")[:, : logits.shape[-1]]
        blocked = torch.from_numpy(blocked).to(logits.device) == 0
        return logits.masked_fill(blocked, float("-inf"))

    def consume(self, row: int, token: int) -> bool:
        """Advance a row's matcher by its sampled token; True when the guide is complete and takes nothing more."""
        m = self.rows[row]
        if m is None:
            return False
        if not m.consume_token(token):
            raise EngineError(f"hf: guided row took a token its guide rejects ({m.get_error()})")
        return m.is_stopped()
