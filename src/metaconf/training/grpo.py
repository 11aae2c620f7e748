"""The `grpo` objective: RL with TRL's GRPOTrainer on the same LoRA stack as SFT, rewarded for calibration (RLCR).

For every training prompt (a training example's chat messages without the assistant reply) the model samples
`grpo_generations` replies under the template's guide (engines/guidance.py, applied as a logits processor in TRL's
transformers generation path), each reply is scored by `training.rewards` (single: correct - (confidence -
correct)^2; pairwise: 1 when it chooses the question it answers correctly more often), and GRPO raises the
probability of the replies that beat their group's mean. What each prompt needs for its reward (its questions with
their gold answers; for pairs, each question's sampled accuracy) is read from the training set's examples.jsonl,
line by line beside train.jsonl.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metaconf.data.schema import Question
from metaconf.errors import DataError
from metaconf.io import file_sha256, iter_jsonl_objects
from metaconf.tasks.task import Task, get_task
from metaconf.training.data import load_chat_examples
from metaconf.training.rewards import pairwise_reward, single_reward

if TYPE_CHECKING:
    from metaconf.engines.guidance import Guidance, RowGuides
    from metaconf.training.lora import LoraJob


@dataclass(frozen=True)
class GrpoPrompt:
    """One training prompt: its chat messages (no reply), the task and template it is written in, the question(s) it
    asks and, for a pair, which question the model answers correctly more often (1 or 2; 0 for a single question)."""

    task: str  # "single" | "pairwise"
    template: str  # a bundled template's name or a template file (targets.examples.template_ref)
    messages: list[dict[str, str]]
    questions: tuple[Question, ...]
    better: int = 0

    @property
    def reply_format(self) -> Task:
        """The Task that guides and parses this prompt's replies."""
        return get_task(self.task, self.template)


def _question(meta: dict[str, Any], key: str, where: str) -> Question:
    row = meta.get(key)
    try:
        return Question.from_dict(row)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        raise DataError(
            f"{where}: field '{key}' (the question with its gold answers) is missing or malformed; rebuild the "
            f"training set (metaconf build-data) for the grpo objective"
        ) from None


def _prompt(messages: list[dict[str, str]], meta: dict[str, Any], where: str) -> GrpoPrompt | None:
    """The GrpoPrompt of one example (None for a pair the model answers equally often: no right choice)."""
    task, template = meta.get("task"), meta.get("template")
    if task not in ("single", "pairwise"):
        raise DataError(f"{where}: field 'task' must be single or pairwise, got {task!r}")
    if not isinstance(template, str) or not template:
        raise DataError(f"{where}: field 'template' (the reply format) is missing; rebuild the training set")
    if task == "single":
        return GrpoPrompt("single", template, messages[:-1], (_question(meta, "question", where),))
    q1, q2 = _question(meta, "question1", where), _question(meta, "question2", where)
    better = meta.get("better")
    if better is None:  # a tie in the sampled accuracies: no right choice
        return None
    if better not in (1, 2) or isinstance(better, bool):
        raise DataError(f"{where}: field 'better' (the question answered correctly more often) must be 1, 2 or null")
    return GrpoPrompt("pairwise", template, messages[:-1], (q1, q2), better)


def load_grpo_prompts(train_file: str | Path) -> list[GrpoPrompt]:
    """The prompts of a training set: train.jsonl's messages paired, line by line, with examples.jsonl's meta
    beside it (DataError naming the file and line when they do not pair up); tied pairs are left out."""
    train_file = Path(train_file)
    examples_file = train_file.with_name("examples.jsonl")
    if not examples_file.is_file():
        raise DataError(f"{examples_file}: not found; the grpo objective reads each example's questions from it")
    chats = load_chat_examples(train_file)
    metas = list(iter_jsonl_objects(examples_file))
    if len(metas) != len(chats):
        raise DataError(f"{examples_file}: {len(metas)} lines for {len(chats)} examples in {train_file.name}")
    prompts = [_prompt(chat, meta, f"{examples_file}:{line}") for chat, (line, meta) in zip(chats, metas)]
    kept = [p for p in prompts if p is not None]
    if not kept:
        raise DataError(f"{examples_file}: no example to train with grpo (every pair is a tie)")
    return kept


def _fits(prompts: list[GrpoPrompt], tokenizer: Any, max_length: int, completion: int) -> list[GrpoPrompt]:
    """The prompts whose templated length plus the reply's token limit fits `max_length`; says how many were left."""
    kept = []
    for p in prompts:
        ids = tokenizer.apply_chat_template(p.messages, tokenize=True, add_generation_prompt=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        if len(ids) + completion <= max_length:
            kept.append(p)
    if len(kept) < len(prompts):
        print(f"metaconf: grpo: left out {len(prompts) - len(kept)} prompt(s) longer than max_length", file=sys.stderr)
    if not kept:
        raise DataError(f"grpo: every prompt is longer than max_length={max_length} tokens with its reply")
    return kept


def reply_limit(prompts: Sequence[GrpoPrompt]) -> int:
    """The longest guided reply of the prompts' reply formats, in tokens (their guides bound every reply by it)."""
    formats = {(p.task, p.template) for p in prompts}
    return max(get_task(kind, template).token_limit(guided=True) for kind, template in formats)


def dataset_rows(prompts: Sequence[GrpoPrompt], limit: int) -> list[dict[str, Any]]:
    """TRL rows: the conversational `prompt` plus the columns the rewards and the guide read (`questions` as JSON,
    so rows of both tasks share one Arrow schema)."""
    return [
        {
            "prompt": p.messages,
            "task": p.task,
            "template": p.template,
            "questions": json.dumps([q.to_dict() for q in p.questions]),
            "better": p.better,
            "guide": p.reply_format.guide(*p.questions, max_new_tokens=limit),
        }
        for p in prompts
    ]


def _reply_text(completion: Any) -> str:
    """A TRL completion (conversational: a list with one assistant message; or plain text) as text."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def single_calibration_reward(completions, task, template, questions, **_) -> list[float | None]:  # noqa: ANN001
    """TRL reward function: `single_reward` for the single-question rows, None for the others (TRL sums the
    functions per reply, leaving out None)."""
    return [
        single_reward(_reply_text(c), Question.from_dict(json.loads(q)[0]), get_task("single", tp))
        if t == "single"
        else None
        for c, t, tp, q in zip(completions, task, template, questions)
    ]


def pairwise_choice_reward(completions, task, template, questions, better, **_) -> list[float | None]:  # noqa: ANN001
    """TRL reward function: `pairwise_reward` for the pairwise rows, None for the others."""
    return [
        pairwise_reward(_reply_text(c), [Question.from_dict(d) for d in json.loads(q)], b, get_task("pairwise", tp))
        if t == "pairwise"
        else None
        for c, t, tp, q, b in zip(completions, task, template, questions, better)
    ]


REWARD_FUNCTIONS = (single_calibration_reward, pairwise_choice_reward)


def guide_processor(rows: RowGuides, eos_ids: Sequence[int]) -> Any:
    """A transformers LogitsProcessor that keeps each row of one `generate` call inside its guide: at every step it
    advances the row's matcher by the token just sampled and masks the tokens the guide forbids (a finished row,
    past its EOS, is left alone: generate pads it)."""
    from transformers import LogitsProcessor

    class GuideLogitsProcessor(LogitsProcessor):
        def __init__(self) -> None:
            self.prompt_length: int | None = None
            self.done = [False] * len(rows.rows)

        def __call__(self, input_ids, scores):  # noqa: ANN001
            if self.prompt_length is None:
                self.prompt_length = input_ids.shape[1]
            else:
                for row, token in enumerate(input_ids[:, -1].tolist()):
                    if self.done[row]:
                        continue
                    if token in eos_ids:
                        self.done[row] = True
                    else:
                        rows.consume(row, token)  # True once the guide is complete: its mask then allows EOS only
            return rows.mask(scores, [None if d else r for r, d in enumerate(self.done)])

    return GuideLogitsProcessor()


def _guided_generate(trainer: Any, guidance: Guidance) -> None:
    """Make the policy's `generate` (the one TRL's transformers path calls) use the guides of the rows being
    generated, which `GuidedGRPOTrainer` sets from the batch's `guide` column."""
    from transformers import LogitsProcessorList

    model = trainer.accelerator.unwrap_model(trainer.model)
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        guides = trainer.pending_guides
        if guides is not None:
            processor = guide_processor(guidance.matchers(guides), trainer.eos_token_ids)
            kwargs["logits_processor"] = LogitsProcessorList([processor, *(kwargs.get("logits_processor") or [])])
        return original(*args, **kwargs)

    model.generate = generate


def _guided_trainer_class() -> type:
    """GRPOTrainer that records the guides of the rows it is about to generate (their order is the batch's)."""
    from trl import GRPOTrainer

    class GuidedGRPOTrainer(GRPOTrainer):
        pending_guides: list[str] | None = None

        def _generate_and_score_completions(self, inputs):  # noqa: ANN001
            self.pending_guides = [x["guide"] for x in inputs] if self.guided else None
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                self.pending_guides = None

    return GuidedGRPOTrainer


def _grpo_config(job: LoraJob, completion: int) -> Any:
    """GRPOConfig from the job's settings: `batch_size` prompts per device and step, each with k replies."""
    from trl import GRPOConfig

    from metaconf.training.lora import trainer_arguments

    config, k = job.config, job.config.grpo_generations
    return GRPOConfig(
        **{**trainer_arguments(job), "per_device_train_batch_size": config.batch_size * k},
        num_generations=k,
        max_completion_length=completion,
        temperature=1.0,  # RLCR samples at T=1
        beta=config.grpo_beta,
    )


def build_grpo_trainer(job: LoraJob, callbacks: Sequence[Any] = ()) -> Any:
    """A GRPOTrainer on a fresh LoRA adapter (the SFT stack: `_load_base`, `_lora_placement`, `_with_adapter`)
    whose rewards are `training.rewards`' and whose replies follow their template's guide (`config.grpo_guided`).

    The frozen-layer cache does not apply (generation runs the whole model), so `trainer.frozen_split` is None.
    """
    from datasets import Dataset

    from metaconf.engines.guidance import Guidance
    from metaconf.training.lora import _load_base, _lora_placement, _with_adapter, finish_trainer, load_tokenizer

    tokenizer = load_tokenizer(job)
    prompts = load_grpo_prompts(job.train_file)
    limit = reply_limit(prompts)
    prompts = _fits(prompts, tokenizer, job.config.max_length, limit + 1)
    if job.config.cache_frozen_layers:
        note = "cache_frozen_layers does not apply (replies are sampled with the whole model)"
        print(f"metaconf: {job.output_dir.name}: grpo: {note}", file=sys.stderr)
    base = _load_base(job)
    layers, targets = _lora_placement(job.config, base)
    peft_model = _with_adapter(job.config, base, layers, targets)
    trainer = _guided_trainer_class()(
        model=peft_model,
        reward_funcs=list(REWARD_FUNCTIONS),
        args=_grpo_config(job, limit + 1),  # one token past the longest guided reply: its EOS
        train_dataset=Dataset.from_list(dataset_rows(prompts, limit)),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.guided = job.config.grpo_guided
    if trainer.guided:
        vocab = peft_model.get_output_embeddings().weight.shape[0]
        _guided_generate(trainer, Guidance(tokenizer, vocab, sorted(trainer.eos_token_ids)))
    return finish_trainer(trainer, job)


def grpo_inputs(job: LoraJob) -> dict[str, Any]:
    """What a grpo run depends on besides train.jsonl, the LoRA settings and the model (its fingerprint inputs):
    the examples.jsonl its rewards read, and the grpo settings."""
    examples = Path(job.train_file).with_name("examples.jsonl")
    if not examples.is_file():
        raise DataError(f"{examples}: not found; the grpo objective reads each example's questions from it")
    config = job.config
    return {
        "examples_sha256": file_sha256(examples),
        "generations": config.grpo_generations,
        "beta": config.grpo_beta,
        "guided": config.grpo_guided,
    }
