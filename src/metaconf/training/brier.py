"""The `brier` objective: proper scoring rules on the model's own probabilities, instead of binned targets.

Per example of a training set (`train.jsonl`, with its labels in `examples.jsonl`, line by line):

- the answer and the rest of the reply: cross-entropy on the reply's tokens, as in SFT;
- single-question examples, at the first token of the stated confidence: the expected Brier score
  sum_k p_k (v_k - y)^2 of the model's distribution p over the confidence levels v_k (renormalised over their
  tokens), against y = whether the modal answer is correct (1 / 0; `brier_soft_labels`: its sampled accuracy);
- pairwise examples, at the choice token: the log loss -log p(better) of the model's probability of choosing the
  question it answers correctly more often in its samples (renormalised over the two choice tokens); a tie is left
  out (no loss at the choice).

The confidence levels are whole percentages whose first token differs (`LEVELS`: 0, 15, 25, ..., 95), so the
distribution at one position is the distribution over the levels (ConfTuner's "tokenized Brier score"). The reply
states the level nearest to the example's SFT target (`target`, the confidence the sft condition writes), and the
tokens after its first one are trained by cross-entropy, which teaches the model to complete each level's first
token into that level. Not the level nearest y: with 1 / 0 labels the replies would state only 0 and 95, while
the Brier-optimal first token of a model that cannot tell its answers apart is the base rate's level (15 at a 15%
accuracy); its continuation would never be trained and the base model's own ("1" -> "100%") would be stated.
Each scored position counts as one loss item in place of its token, so the loss is normalised as SFT's is (per
trained token, across devices and accumulation).

The trainer is TRL's SFTTrainer with its own `compute_loss`, on the same LoRA stack and frozen-layer cache as SFT.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaconf.errors import DataError
from metaconf.io import file_sha256, iter_jsonl_objects
from metaconf.training.data import fits_length, load_chat_examples, to_prompt_completion

LEVELS = (0, 15, 25, 35, 45, 55, 65, 75, 85, 95)  # stated confidences (%), each with its own first token
CHOICES = (1, 2)
UNSCORED, SINGLE, PAIRWISE = 0, 1, 2
LABELS_FILE = "examples.jsonl"  # next to train.jsonl: one row of labels per line (targets/export.py)
STATED_LEVEL = "nearest the sft target"  # the level a training reply states; a fingerprint input (a change retrains)


@dataclass(frozen=True)
class ScoredExample:
    """One chat example and what its scored position is trained towards: `kind` SINGLE (target: y in [0, 1]),
    PAIRWISE (target: 1.0 when question 1 is answered correctly more often, 0.0 for question 2) or UNSCORED;
    `at`: where the scored value starts in the reply (characters)."""

    messages: list[dict[str, str]]
    kind: int = UNSCORED
    target: float = 0.0
    at: int = -1


def labels_path(train_file: str | Path) -> Path:
    return Path(train_file).parent / LABELS_FILE


def brier_inputs(job: Any) -> dict[str, Any]:
    """What a brier run depends on besides its training file: the labels file (checked here, before anything is
    written), the soft-label option and the rule for the level a reply states."""
    path = labels_path(job.train_file)
    if not path.is_file():
        raise DataError(f"{path}: the labels of objective brier not found (run build-data first)")
    scored_examples(job.train_file, job.config.brier_soft_labels)
    return {"labels_sha256": file_sha256(path), "soft_labels": job.config.brier_soft_labels, "stated": STATED_LEVEL}


def nearest_level(y: float) -> int:
    return min(LEVELS, key=lambda v: abs(v / 100 - y))


def _field(row: dict[str, Any], name: str, where: str, kinds: tuple[type, ...]) -> Any:
    value = row.get(name)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise DataError(f"{where}: field '{name}' missing or not a {kinds[0].__name__} (rerun build-data)")
    return value


def _scored(messages: list[dict[str, str]], row: dict[str, Any], where: str, soft: bool) -> ScoredExample:
    """The example with its label; a single example's confidence rewritten to the level nearest its SFT target."""
    reply = messages[-1]["content"]
    if row.get("task") not in ("single", "pairwise"):
        return ScoredExample(messages)
    at = _field(row, "score_at", where, (int,))
    if row["task"] == "pairwise":
        better = row.get("better")
        if better not in (1, 2, None):
            raise DataError(f"{where}: field 'better' must be 1, 2 or null")
        if reply[at : at + 1] not in ("1", "2"):
            raise DataError(f"{where}: field 'score_at': no choice at character {at} of the reply")
        return ScoredExample(messages, UNSCORED if better is None else PAIRWISE, float(better == 1), at)
    y = float(_field(row, "sampled_accuracy", where, (float, int))) if soft else None
    if y is None:
        y = float(_field(row, "modal_correct", where, (bool,)))
    stated = float(_field(row, "target", where, (float, int)))
    digits = re.match(r"\d+", reply[at:])
    if digits is None or not 0.0 <= y <= 1.0:
        raise DataError(f"{where}: field 'score_at': no confidence at character {at} of the reply")
    rewritten = reply[:at] + str(nearest_level(stated)) + reply[at + digits.end() :]
    return ScoredExample([*messages[:-1], {"role": "assistant", "content": rewritten}], SINGLE, y, at)


def scored_examples(train_file: str | Path, soft: bool = False) -> list[ScoredExample]:
    """The chats of `train_file` with their labels from `examples.jsonl` (the same line order)."""
    examples = load_chat_examples(train_file)
    path = labels_path(train_file)
    rows = list(iter_jsonl_objects(path)) if path.is_file() else []
    if len(rows) != len(examples):
        raise DataError(
            f"{path}: {len(rows)} label rows for {len(examples)} examples in {train_file} (rerun build-data)"
        )
    return [_scored(m, row, f"{path}:{lineno}", soft) for m, (lineno, row) in zip(examples, rows)]


def _token_at(tokenizer: Any, ids: Sequence[int], start: int, reply: str, at: int) -> int:
    """Index in `ids` of the token holding character `at` of `reply`, the completion starting at `ids[start]`."""
    text = tokenizer.decode(ids[start:])
    base = text.find(reply)
    if base < 0:
        raise DataError(f"the tokenized completion does not hold the reply {reply[:40]!r}")
    for k in range(start, len(ids)):
        if len(tokenizer.decode(ids[start : k + 1])) > base + at:
            return k
    raise DataError(f"reply {reply[:40]!r}: character {at} is past its last token")


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], int]:
    """(ids of the whole chat, index of the completion's first token), as TRL's prompt-completion tokenization."""

    def ids(chat: list[dict[str, str]], **kw: Any) -> list[int]:
        out = tokenizer.apply_chat_template(chat, tokenize=True, **kw)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    full, prompt = ids(messages), ids(messages[:-1], add_generation_prompt=True)
    start = next((i for i, (a, b) in enumerate(zip(full, prompt)) if a != b), min(len(full), len(prompt)))
    return full, start


def value_tokens(tokenizer: Any, example: ScoredExample, values: Sequence[int]) -> list[int]:
    """The token id that starts each of `values` at the example's scored position: one distinct token per value
    after the same prefix of tokens (DataError naming the values otherwise)."""
    reply = example.messages[-1]["content"]
    old = re.match(r"\d+", reply[example.at :])
    tokens, prefixes = [], set()
    for value in values:
        text = reply[: example.at] + str(value) + reply[example.at + (old.end() if old else 0) :]
        ids, start = _chat_ids(tokenizer, [*example.messages[:-1], {"role": "assistant", "content": text}])
        k = _token_at(tokenizer, ids, start, text, example.at)
        tokens.append(ids[k])
        prefixes.add(tuple(ids[:k]))
    if len(set(tokens)) != len(tokens) or len(prefixes) != 1:
        raise DataError(
            f"{tokenizer.name_or_path}: the values {', '.join(map(str, values))} do not each start with a token of "
            "their own after the same text; objective brier cannot score them at one position"
        )
    return tokens


def keep_fitting(
    examples: list[ScoredExample], tokenizer: Any, max_length: int, train_file: Any
) -> list[ScoredExample]:
    """The examples that fit `max_length` tokens; says how many were left out."""
    fits = fits_length([e.messages for e in examples], tokenizer, max_length)
    kept = [e for e, ok in zip(examples, fits) if ok]
    if len(kept) < len(examples):
        print(
            f"metaconf: {train_file}: left out {len(examples) - len(kept)} example(s) longer than "
            f"max_length={max_length}",
            file=sys.stderr,
        )
    if not kept:
        raise DataError(f"{train_file}: every example is longer than max_length={max_length} tokens")
    return kept


def score_dataset(examples: list[ScoredExample]) -> Any:
    """A datasets.Dataset of TRL prompt/completion rows with the labels as extra columns."""
    from datasets import Dataset

    rows = [
        {**to_prompt_completion(e.messages), "score_kind": e.kind, "score_target": e.target, "score_at": e.at}
        for e in examples
    ]
    return Dataset.from_list(rows)


def with_positions(dataset: Any, tokenizer: Any, tokens: dict[int, list[int]]) -> Any:
    """TRL's tokenized rows + `score_position`: the index of the scored token (-1: none), checked to be one of its
    kind's value tokens (`tokens`: kind -> ids). A tie's choice is taken out of the loss (its label -100)."""

    def locate(row: dict[str, Any]) -> dict[str, Any]:
        labels, at = list(row["labels"]), row["score_at"]
        if at < 0:
            return {"score_position": -1, "labels": labels}
        start = next(i for i, label in enumerate(labels) if label != -100)
        reply = row["completion"][-1]["content"]
        k = _token_at(tokenizer, row["input_ids"], start, reply, at)
        kind = row["score_kind"] or PAIRWISE  # an unscored example here is a pair whose questions tie
        if row["input_ids"][k] not in tokens.get(kind, ()):
            raise DataError(f"reply {reply[:40]!r}: the scored value does not start a token of its own")
        if row["score_kind"] == UNSCORED:
            labels[k] = -100
            return {"score_position": -1, "labels": labels}
        return {"score_position": k, "labels": labels}

    located = dataset.map(locate, desc=None)
    return located.remove_columns([c for c in ("prompt", "completion", "score_at") if c in located.column_names])


class ScoreCollator:
    """Wraps TRL's collator: the label columns become tensors of the batch (`score_kind`, `score_target`,
    `score_position`) next to what TRL's collator makes of the rest."""

    KEYS = ("score_kind", "score_target", "score_position")

    def __init__(self, collator: Any):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.collator([{k: v for k, v in e.items() if k not in self.KEYS} for e in examples])
        batch["score_kind"] = torch.tensor([e["score_kind"] for e in examples], dtype=torch.long)
        batch["score_target"] = torch.tensor([e["score_target"] for e in examples], dtype=torch.float32)
        batch["score_position"] = torch.tensor([e["score_position"] for e in examples], dtype=torch.long)
        return batch


def expected_brier(logits: Any, value_ids: Any, values: Any, y: Any) -> Any:
    """sum_k p_k (v_k - y)^2 per row: p the softmax of `logits` ([n, vocab]) over the tokens `value_ids`."""
    p = logits[:, value_ids.to(logits.device)].float().softmax(-1)
    return (p * (values.to(p.device)[None, :] - y.to(p.device)[:, None]) ** 2).sum(-1)


def choice_log_loss(logits: Any, choice_ids: Any, first_better: Any) -> Any:
    """-log p(better) per row: p the softmax of `logits` over the two choice tokens (question 1, question 2)."""
    logp = logits[:, choice_ids.to(logits.device)].float().log_softmax(-1)
    first_better = first_better.to(logp.device)
    return -(first_better * logp[:, 0] + (1 - first_better) * logp[:, 1])


def _brier_trainer_class() -> type:
    """SFTTrainer with the brier objective's loss (module docstring); only the reply positions go through the LM
    head, as in SFT's fast loss, and the model is called through its (DDP/FSDP) wrapper."""
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class BrierSFTTrainer(SFTTrainer):
        level_ids: Any  # token ids of LEVELS at the confidence position
        level_values: Any  # LEVELS as probabilities
        choice_ids: Any  # token ids of question 1 and question 2 at the choice position

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            kind, target = inputs.pop("score_kind"), inputs.pop("score_target")
            position = inputs.pop("score_position")
            targets = inputs["labels"][:, 1:]  # position p predicts token p + 1
            keep = (targets != -100).any(0).nonzero().squeeze(-1)
            if keep.numel() == 0:
                keep = torch.zeros(1, dtype=torch.long, device=targets.device)
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**forward, use_cache=False, logits_to_keep=keep)
            logits, kept = outputs.logits, targets[:, keep].clone()
            rows = (kind != UNSCORED).nonzero().squeeze(-1)
            at = torch.searchsorted(keep, position[rows] - 1)  # the logit that predicts the scored token
            kept[rows, at] = -100  # scored by its rule instead of cross-entropy
            loss_sum = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), kept.reshape(-1), ignore_index=-100, reduction="sum"
            )
            scored = logits[rows, at]
            single, pair = kind[rows] == SINGLE, kind[rows] == PAIRWISE
            brier = expected_brier(scored[single], self.level_ids, self.level_values, target[rows][single])
            choice = choice_log_loss(scored[pair], self.choice_ids, target[rows][pair])
            loss_sum = loss_sum + brier.sum() + choice.sum()
            count = (targets != -100).sum() if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / torch.as_tensor(count, device=loss_sum.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over ranks
            mode = "train" if model.training else "eval"
            if single.any():
                self._metrics[mode]["confidence_brier"].append(float(brier.detach().mean()))
            if pair.any():
                self._metrics[mode]["choice_log_loss"].append(float(choice.detach().mean()))
            return (loss, outputs) if return_outputs else loss

    return BrierSFTTrainer


def _value_tokens_by_kind(tokenizer: Any, examples: list[ScoredExample]) -> dict[int, list[int]]:
    """kind -> the token ids of its values (LEVELS for single, CHOICES for pairwise), from its first example."""
    found: dict[int, list[int]] = {}
    for example in examples:
        kind = example.kind or (PAIRWISE if example.at >= 0 else UNSCORED)
        if kind != UNSCORED and kind not in found:
            found[kind] = value_tokens(tokenizer, example, LEVELS if kind == SINGLE else CHOICES)
    return found


def build_brier_trainer(job: Any, callbacks: Sequence[Any] = ()) -> Any:
    """A trainer of the brier objective for a LoraJob, like `lora.build_trainer` for SFT (same LoRA stack,
    settings, frozen-layer cache and progress line)."""
    import torch

    from metaconf.training.lora import _sft_config, finish_trainer, load_tokenizer, lora_model

    tokenizer = load_tokenizer(job)
    examples = scored_examples(job.train_file, job.config.brier_soft_labels)
    examples = keep_fitting(examples, tokenizer, job.config.max_length, job.train_file)
    tokens = _value_tokens_by_kind(tokenizer, examples)
    peft_model, frozen = lora_model(job, tokenizer, examples[0].messages)
    args = _sft_config(job)
    args.remove_unused_columns = False  # the label columns reach the collator
    trainer = _brier_trainer_class()(
        model=peft_model,
        args=args,
        train_dataset=score_dataset(examples),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.train_dataset = with_positions(trainer.train_dataset, tokenizer, tokens)
    trainer.level_ids = torch.tensor(tokens.get(SINGLE, [0] * len(LEVELS)))
    trainer.level_values = torch.tensor([v / 100 for v in LEVELS])
    trainer.choice_ids = torch.tensor(tokens.get(PAIRWISE, [0, 0]))
    trainer.data_collator = ScoreCollator(trainer.data_collator)
    return finish_trainer(trainer, job, frozen)
