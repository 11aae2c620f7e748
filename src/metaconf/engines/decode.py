"""The hf engine's decode loop: one row per wanted sample, stepped until every row finished or the token limit.

After prefill the KV cache is expanded across each prompt's samples; only the last position's logits are computed;
rows that finished are dropped from the batch when that is cheaper than carrying them. Each sample draws its random
numbers from its own generator seeded by `sample_seed`, so its text does not depend on n or on its batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metaconf.engines.base import apply_stop, sample_seed
from metaconf.engines.types import Completion, PromptRequest, SamplingParams, TokenLogprob


class Decode:
    """One batch of requests decoded by an hf engine (`engine.prefill`, `engine.forward`, its tokenizer)."""

    def __init__(self, engine: Any, requests: list[PromptRequest], params: SamplingParams):
        self.engine, self.params = engine, params
        self.prompts = [engine.prompt_ids(r.messages) for r in requests]
        self.expand = any(len(r.sample_indices) != 1 for r in requests)
        self.row_prompt = [i for i, r in enumerate(requests) for _ in r.sample_indices]
        self.row_seeds = [sample_seed(r.seed, s) for r in requests for s in r.sample_indices]
        row_guides = [r.guide for r in requests for _ in r.sample_indices]
        self.guided = engine.guides().matchers(row_guides) if any(g is not None for g in row_guides) else None
        n = len(self.row_prompt)
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.lps: list[list[TokenLogprob]] = [[] for _ in range(n)]
        self.finish = ["length"] * n
        self.texts: list[str | None] = [None] * n
        self.done = [False] * n
        self.active = list(range(n))  # row ids of the cache's batch entries, in order

    def run(self, cache: Any) -> list[list[Completion]]:
        import torch

        engine, params, dev = self.engine, self.params, self.engine.device
        logits, mask = engine.prefill(self.prompts, cache)
        select = torch.tensor(self.row_prompt, device=dev)
        if self.expand:  # the prompt's cache is shared by copying it into each of its rows
            cache.batch_select_indices(select)
        logits, mask = logits[select], mask[select]
        next_pos = torch.tensor([len(self.prompts[i]) for i in self.row_prompt], device=dev)
        uniforms = None if params.greedy else row_uniforms(self.row_seeds, params.max_new_tokens).to(dev)
        for step in range(params.max_new_tokens):
            u = uniforms[self.active, step] if uniforms is not None else None
            if self.guided is not None:
                logits = self.guided.mask(logits, [row if not self.done[row] else None for row in self.active])
            chosen, logprob_rows = sample(logits, params, u)
            if params.logprobs is not None:
                going = [(j, row) for j, row in enumerate(self.active) if not self.done[row]]
                record_logprobs(logprob_rows, chosen, params.logprobs, going, self.lps, engine.token_text)
            keep = self.advance(chosen.tolist())
            if not keep or step == params.max_new_tokens - 1:
                break
            if self.worth_dropping(len(keep), step):  # one copy of the cache vs. the finished rows' passes
                sel = torch.tensor(keep, device=dev)
                cache.batch_select_indices(sel)
                mask, next_pos, chosen = mask[sel], next_pos[sel], chosen[sel]
                self.active = [self.active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(self.active), 1))], dim=1)
            out = engine.forward(
                input_ids=chosen.view(-1, 1), attention_mask=mask, position_ids=next_pos.view(-1, 1), cache=cache
            )
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        return self.completions()

    def advance(self, chosen: list[int]) -> list[int]:
        """Append each going row's token; the positions in `active` of the rows that go on."""
        keep = []
        for j, row in enumerate(self.active):
            if self.done[row]:  # finished earlier but kept in the batch (cheaper than a copy of the cache)
                continue
            self.tokens[row].append(chosen[j])
            if self.finished(row, chosen[j]):
                self.done[row] = True
            else:
                keep.append(j)
        return keep

    def finished(self, row: int, token: int) -> bool:
        """Whether `token` ends the row: EOS, a complete guide, or a stop string (then its text is kept)."""
        if token in self.engine.eos_ids:
            self.finish[row] = "stop"
            return True
        if self.guided is not None and self.guided.consume(row, token):
            self.finish[row] = "stop"  # the guide is complete and can take nothing more
            return True
        if self.params.stop:
            text, cut = apply_stop(self.engine.decode(self.tokens[row]), self.params.stop)
            if cut:
                self.finish[row], self.texts[row] = "stop", text
                return True
        return False

    def worth_dropping(self, kept: int, step: int) -> bool:
        """Dropping finished rows costs one copy of the cache; keeping them costs their forward passes."""
        active = len(self.active)
        return kept < active and (active - kept) * (self.params.max_new_tokens - step) >= active

    def completions(self) -> list[list[Completion]]:
        """Each request's completions, in the order of its sample indices."""
        params, engine = self.params, self.engine
        results: list[list[Completion]] = [[] for _ in self.prompts]
        for row, p in enumerate(self.row_prompt):
            toks = self.tokens[row]
            text = self.texts[row]
            if text is None:
                text = engine.decode([t for t in toks if t not in engine.eos_ids])
                if params.stop:
                    text, _ = apply_stop(text, params.stop)
            results[p].append(
                Completion(
                    text=text,
                    logprobs=self.lps[row] if params.logprobs is not None else None,
                    finish_reason=self.finish[row],
                    prompt_tokens=len(self.prompts[p]),
                    completion_tokens=len(toks),
                )
            )
        return results


def row_uniforms(seeds: list[int], steps: int) -> Any:
    """One uniform per row and step, each row from its own generator (float64 on the CPU, then moved)."""
    import torch

    return torch.stack(
        [torch.rand(steps, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
    )


def sample(logits, params: SamplingParams, u):
    """Next token per row and the rows' log-probabilities (log_softmax of logits / temperature).

    Sampling is inverse-CDF with one uniform per row, taken from that row's own generator: a row's choice
    depends only on its logits and its seed. Top-p keeps the smallest most-likely set with mass >= top_p.
    """
    import torch

    logits = logits.float()
    if params.greedy:
        return logits.argmax(-1), torch.log_softmax(logits, dim=-1)
    logprobs = torch.log_softmax(logits / params.temperature, dim=-1)
    probs = logprobs.exp()
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p >= params.top_p  # mass before this token already reaches top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    cdf = probs.double().cumsum(-1)
    target = (u * cdf[:, -1]).unsqueeze(1)
    chosen = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=probs.shape[-1] - 1)
    return chosen, logprobs


def record_logprobs(
    logprob_rows, chosen, k: int, going: list[tuple[int, int]], lps, token_text: Callable[[int], str]
) -> None:
    """Append a TokenLogprob to each going row (batch position j, row id)."""
    import torch

    picked = logprob_rows.gather(1, chosen.view(-1, 1)).squeeze(1).tolist()
    if k > 0:
        top_v, top_i = torch.topk(logprob_rows, k, dim=-1)
        top_v, top_i = top_v.tolist(), top_i.tolist()
    for j, row in going:
        top: dict[str, float] = {}
        if k > 0:
            for tid, v in zip(top_i[j], top_v[j]):
                if v == float("-inf"):  # a token the guide forbids: not an alternative
                    continue
                s = token_text(tid)
                top[s] = max(v, top.get(s, float("-inf")))
        lps[row].append(TokenLogprob(token=token_text(int(chosen[j])), logprob=picked[j], top=top))
