"""LoRA fine-tuning with TRL + PEFT, on one process or many (torchrun / accelerate launch).

The trainer comes from the run's objective (`training/objectives.py`): sft is TRL's SFTTrainer, built here by
`build_trainer`; the other objectives build theirs on the same LoRA stack and frozen-layer cache.

Output folder of `train_lora`:
    adapter/            PEFT adapter + tokenizer (written once, by the main process), metaconf.json (objective)
    train_config.json   settings, objective, model, training file hash, and the result once finished
    log.jsonl           one row per logging step: step, epoch, loss, learning_rate
    loss.png            the loss curve
    checkpoints/        resumable checkpoints while training (removed once DONE)
    DONE                written last; holds the run's fingerprint
A finished folder with the same fingerprint is reused; an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from metaconf.conditions import TRAINED_CONDITIONS, Condition
from metaconf.engines.embedded import resolve_model
from metaconf.errors import ConfigError, DataError, MetaconfError
from metaconf.io import (
    atomic_folder,
    atomic_path,
    file_sha256,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
    write_text_atomic,
)
from metaconf.memory import release_free_memory
from metaconf.names import inside
from metaconf.precision import DtypeChoice, resolve_dtype
from metaconf.processes import call_in_child
from metaconf.training.config import LoraTrainConfig
from metaconf.training.data import filter_by_length, load_chat_examples, to_prompt_completion
from metaconf.training.distributed import enable_cpu_fsdp
from metaconf.training.progress import quiet_libraries, use_own_progress


def _device_settings(config: LoraTrainConfig, dtype: str | DtypeChoice = "auto") -> dict[str, Any]:
    """precision (and how bf16 runs) / gradient checkpointing resolved for the hardware this process runs on.

    `precision: auto` follows `dtype` (the study's model.dtype; 'auto' resolves by metaconf.precision).
    """
    import torch

    precision, reason = config.precision, "training.lora.precision"
    if precision == "auto":
        choice = resolve_dtype(dtype)  # the study's choice as it resolved it, or a name resolved here
        precision, reason = choice.precision, choice.reason
    checkpointing = config.gradient_checkpointing
    if checkpointing == "auto":
        checkpointing = torch.cuda.is_available()
    settings: dict[str, Any] = {"precision": precision, "gradient_checkpointing": bool(checkpointing), "why": reason}
    if precision == "bf16":
        settings["bf16_mode"] = config.bf16_mode
    return settings


def _fingerprint(
    config: LoraTrainConfig,
    model: str,
    train_sha: str,
    device: Mapping[str, Any],
    objective: Mapping[str, Any] | None = None,
) -> str:
    """The run's identity: settings, model, data, precision and (other objectives than sft) the objective's inputs;
    sft runs keep the fingerprints they had before objectives counted."""
    parts: dict[str, Any] = {"config": config.fingerprint(), "model": model, "train": train_sha}
    if device["precision"] != "fp32":  # fp32 runs keep the fingerprints they had before precision counted
        parts["precision"] = f"{device['precision']}/{device.get('bf16_mode', '')}"
    if objective:
        parts["objective"] = dict(objective)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _complete_checkpoint(folder: Path) -> bool:
    """Whether a checkpoint was written to the end: transformers writes its trainer_state.json last, and not
    atomically, so a kill while writing it leaves a file that does not parse."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _last_checkpoint(checkpoints: Path) -> Path | None:
    found = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    complete = [p for p in found if _complete_checkpoint(p)]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


# an objective's own terms, logged next to the loss (brier: its two terms; grpo: the mean reward)
OBJECTIVE_LOG_KEYS = ("confidence_brier", "choice_log_loss", "reward")


def _log_callback(log_path: Path, resumed_step: int) -> Any:
    """A TrainerCallback that rewrites log.jsonl (atomically) at every logging step, on the main process."""
    from transformers import TrainerCallback

    class JsonlLossLog(TrainerCallback):
        def __init__(self) -> None:
            self.rows = [r for r in read_jsonl(log_path, missing_ok=True) if r.get("step", 0) <= resumed_step]

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            self.rows.append(
                {
                    "step": state.global_step,
                    "epoch": round(float(state.epoch or 0.0), 4),
                    "loss": float(logs["loss"]),
                    "learning_rate": float(logs.get("learning_rate", 0.0)),
                    **{k: float(logs[k]) for k in OBJECTIVE_LOG_KEYS if k in logs},
                }
            )
            write_jsonl(log_path, self.rows)

    return JsonlLossLog()


def plot_loss(log_path: str | Path, png_path: str | Path, title: str = "training loss") -> None:
    """Draw log.jsonl's loss against step into a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_jsonl(log_path, missing_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _completion_loss_trainer_class() -> type:
    """SFTTrainer whose loss projects only the positions that predict a reply token through the LM head.

    TRL's default loss scores every position through a tiled LM head (a slow torch fallback off Triton GPUs) and
    computes entropy metrics; our replies are a few tokens after a long prompt, so on CPU most of that is waste.
    The model is still called through its (DDP/FSDP) wrapper, so gradients synchronise as usual.
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class CompletionLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            targets = inputs["labels"][:, 1:]  # position p predicts token p + 1
            trained = targets != -100
            keep = trained.any(0).nonzero().squeeze(-1)
            if keep.numel() == 0:
                keep = torch.zeros(1, dtype=torch.long, device=targets.device)
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**forward, use_cache=False, logits_to_keep=keep)
            logits, kept = outputs.logits, targets[:, keep]
            loss_sum = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), kept.reshape(-1), ignore_index=-100, reduction="sum"
            )
            count = trained.sum() if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / torch.as_tensor(count, device=loss_sum.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over ranks
            mode = "train" if model.training else "eval"
            with torch.no_grad():
                valid = kept != -100
                correct = ((logits.argmax(-1) == kept) & valid).sum().item()
                self._metrics[mode]["mean_token_accuracy"].append(correct / max(1, int(valid.sum().item())))
            return (loss, outputs) if return_outputs else loss

    return CompletionLossSFTTrainer


def _drop_gguf_marker(model: Any) -> None:
    """A model converted from GGUF holds plain dequantized weights but keeps a GGUF quantization_config, which
    makes transformers refuse to train it; the weights are ordinary tensors, so drop the marker."""
    quant = getattr(model.config, "quantization_config", None)
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    if str(getattr(method, "value", method)).lower() == "gguf":
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False


def _split_for_cache(
    base: Any,
    split: int,
    tokenizer: Any,
    probe: list[dict[str, str]],
    model_path: str,
    frozen_states: dict | None,
    state_dtype: Any = None,
) -> tuple[Any, Any]:
    """(upper model, FrozenLowerLayers) for `cache_frozen_layers`, after checking on one training example that the
    split model reproduces the full model's logits (an architecture that transforms `inputs_embeds` would not).
    The frozen lower layers run, and their states are kept, in `state_dtype` (default: the base model's)."""
    import torch

    from metaconf.training.frozen import (
        BF16_PROBE_TOLERANCE,
        PROBE_TOLERANCE,
        FrozenLowerLayers,
        split_logits_gap,
        split_model,
    )

    state_dtype = state_dtype or base.dtype
    ids = tokenizer.apply_chat_template(probe, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    with torch.no_grad():
        want = base(input_ids=torch.tensor([ids], device=base.device), use_cache=False).logits
    lower, upper = split_model(base, split)
    lower.to(state_dtype)
    states = None if frozen_states is None else frozen_states.setdefault((model_path, split, str(state_dtype)), {})
    frozen = FrozenLowerLayers(lower, split, tokenizer.pad_token_id or 0, states)
    gap = split_logits_gap(want, upper, frozen, ids)
    exact = base.dtype == state_dtype == torch.float32
    tolerance = (PROBE_TOLERANCE if exact else BF16_PROBE_TOLERANCE) * max(1.0, float(want.abs().max()))
    if gap > tolerance:
        raise MetaconfError(
            f"{model_path}: training the upper layers on cached lower-layer states does not reproduce the full "
            f"model (logit gap {gap:.3g}); set cache_frozen_layers: false for this model"
        )
    return upper, frozen


@dataclass
class LoraJob:
    """One training run's inputs, said once: the chat JSONL file, the output folder, the model (a name or path,
    resolved on creation), the settings, the study's model.dtype (followed where `config.precision` is 'auto'),
    `frozen_states`, a dict shared between trainings of the same model that keeps cached lower-layer states, and
    the training objective (metaconf.conditions.OBJECTIVES; its trainer: training/objectives.py)."""

    train_file: str | Path
    output_dir: Path
    model: str | Path = "embedded"
    config: LoraTrainConfig = field(default_factory=LoraTrainConfig)
    dtype: str | DtypeChoice = "auto"
    frozen_states: dict | None = None
    objective: str = "sft"

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        self.model_path = resolve_model(self.model)

    @cached_property
    def device(self) -> dict[str, Any]:
        """Precision (and bf16 mode) and gradient checkpointing for the hardware this process runs on."""
        return _device_settings(self.config, self.dtype)


def _training_examples(job: LoraJob, tokenizer: Any) -> list[list[dict[str, str]]]:
    """The chat examples of `job.train_file` that fit `max_length` tokens; says how many were left out."""
    max_length = job.config.max_length
    examples, dropped = filter_by_length(load_chat_examples(job.train_file), tokenizer, max_length)
    if dropped:
        print(
            f"metaconf: {job.train_file}: left out {dropped} example(s) longer than max_length={max_length}",
            file=sys.stderr,
        )
    if not examples:
        raise DataError(f"{job.train_file}: every example is longer than max_length={max_length} tokens")
    return examples


def _load_base(job: LoraJob) -> Any:
    """The base model to put LoRA on; bf16 "weights" keeps the frozen base weights in bf16 (PEFT keeps the LoRA
    weights, hence gradients and AdamW state, in fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    bf16_weights = job.device["precision"] == "bf16" and job.device["bf16_mode"] == "weights"
    base = AutoModelForCausalLM.from_pretrained(job.model_path, dtype=torch.bfloat16 if bf16_weights else torch.float32)
    _drop_gguf_marker(base)
    return base


def _lora_placement(config: LoraTrainConfig, base: Any) -> tuple[list[int] | None, Any]:
    """(layers, target modules) for the adapter: PEFT wants explicit module names with `layers_to_transform`."""
    import torch

    layers = config.lora_layers(base.config.num_hidden_layers)
    targets = config.target_modules
    if layers is not None and targets == "all-linear":
        head = base.get_output_embeddings()
        targets = sorted(
            {n.split(".")[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
        )
    return layers, targets


def _cache_lower_layers(
    job: LoraJob, base: Any, tokenizer: Any, probe: list[dict[str, str]], layers: list[int] | None
) -> tuple[Any, Any, list[int]]:
    """(upper model, FrozenLowerLayers, layers renumbered onto the upper model) for `cache_frozen_layers`."""
    import torch

    split = min(layers) if layers else 0
    if split == 0:
        raise ConfigError(
            "cache_frozen_layers: needs LoRA on upper layers only (set top_layers or layers_to_transform above layer 0)"
        )
    state_dtype = torch.bfloat16 if job.device["precision"] == "bf16" else torch.float32
    upper, frozen = _split_for_cache(base, split, tokenizer, probe, job.model_path, job.frozen_states, state_dtype)
    return upper, frozen, [i - split for i in layers]


def lora_config(config: LoraTrainConfig, layers: list[int] | None, targets: Any) -> Any:
    """PEFT's LoraConfig for `config` on these layers and modules (from `_lora_placement`)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def _with_adapter(config: LoraTrainConfig, base: Any, layers: list[int] | None, targets: Any) -> Any:
    """`base` with a fresh LoRA adapter, initialised from `config.seed`."""
    from peft import get_peft_model
    from transformers import set_seed

    set_seed(config.seed)  # LoRA initialisation is drawn here, before the trainer exists
    return get_peft_model(base, lora_config(config, layers, targets))


def trainer_arguments(job: LoraJob) -> dict[str, Any]:
    """The HF Trainer arguments every objective shares: the settings of `job.config` and the precision chosen for
    this hardware (each objective's config class adds its own)."""
    import torch

    config, precision = job.config, job.device["precision"]
    return dict(
        output_dir=str(job.output_dir / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=precision == "bf16" and job.device["bf16_mode"] != "weights",  # autocast
        fp16=precision == "fp16",
        activation_checkpointing=job.device["gradient_checkpointing"],
        activation_checkpointing_kwargs={"use_reentrant": False},
        use_cpu=not torch.cuda.is_available(),  # also makes torchrun on CPU use DDP over gloo
        report_to="none",
        disable_tqdm=True,  # the project's own progress line instead (training/progress.py)
        dataloader_num_workers=0,
    )


def _sft_config(job: LoraJob) -> Any:
    """The SFT trainer's arguments (shared ones, completion-only loss, length grouping)."""
    from trl import SFTConfig

    config = job.config
    return SFTConfig(
        **trainer_arguments(job),
        max_length=config.max_length,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )


def finish_trainer(trainer: Any, job: LoraJob, frozen: Any = None) -> Any:
    """What every objective's trainer gets once built: FSDP from `accelerate launch` on CPU processes too
    (accelerate does it on GPUs only), the project's progress line, and the cached lower-layer states if any."""
    enable_cpu_fsdp(trainer)
    use_own_progress(trainer, job.output_dir.name)
    _feed_cached_states(trainer, frozen)
    return trainer


def _feed_cached_states(trainer: Any, frozen: Any) -> None:
    """Make the trainer's batches carry the cached lower-layer states; `trainer.frozen_split` names the split."""
    trainer.frozen_split = None
    if frozen is None:
        return
    from metaconf.training.frozen import FrozenStatesCollator

    trainer.data_collator = FrozenStatesCollator(trainer.data_collator, frozen)
    trainer.frozen_split = frozen.split
    if trainer.accelerator.num_processes == 1:  # several ranks compute their own shard as it comes
        frozen.precompute(trainer.train_dataset["input_ids"], progress=sys.stderr.isatty())


def load_tokenizer(job: LoraJob) -> Any:
    """The model's tokenizer, which must have a chat template (the training files are chats)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job.model_path)
    if tokenizer.chat_template is None:
        raise MetaconfError(f"{job.model_path}: the tokenizer has no chat template; use an instruction-tuned model")
    return tokenizer


def lora_model(job: LoraJob, tokenizer: Any, probe: list[dict[str, str]]) -> tuple[Any, Any]:
    """(PEFT model with a fresh adapter, FrozenLowerLayers or None): the base model, or with
    `cache_frozen_layers` its upper layers (checked against the full model on the example `probe`)."""
    base = _load_base(job)
    layers, targets = _lora_placement(job.config, base)
    frozen = None
    if job.config.cache_frozen_layers:
        base, frozen, layers = _cache_lower_layers(job, base, tokenizer, probe, layers)
    return _with_adapter(job.config, base, layers, targets), frozen


def build_trainer(job: LoraJob, callbacks: Sequence[Any] = ()) -> Any:
    """An SFTTrainer with a fresh LoRA adapter, ready to train (also lets tests inspect the tokenised labels).

    With `config.cache_frozen_layers` the trainer's model is the upper layers only and its collator feeds them the
    cached lower-layer states (`trainer.frozen_split` is then the first trained layer).
    """
    from datasets import Dataset
    from trl import SFTTrainer

    tokenizer = load_tokenizer(job)
    examples = _training_examples(job, tokenizer)
    dataset = Dataset.from_list([to_prompt_completion(m) for m in examples])
    peft_model, frozen = lora_model(job, tokenizer, examples[0])
    # With cached states the batch has inputs_embeds instead of input_ids; our loss is the one tested with them
    trainer_class = _completion_loss_trainer_class() if job.config.fast_loss or frozen else SFTTrainer
    trainer = trainer_class(
        model=peft_model,
        args=_sft_config(job),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    return finish_trainer(trainer, job, frozen)


ADAPTER_METADATA = "metaconf.json"  # in the adapter folder: how it was trained (objective, fingerprint)


def stable_adapter_config(adapter_dir: str | Path) -> None:
    """Rewrite adapter_config.json with `target_modules` sorted: PEFT writes them from a set, in a different order
    on every run, which would give identical adapters different bytes."""
    path = Path(adapter_dir) / "adapter_config.json"
    config = read_json(path)
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        write_json(path, config, sort_keys=True)


def _start_record(job: LoraJob, fingerprint: str, train_sha: str, world_size: int, inputs: Mapping[str, Any]) -> None:
    """Write train_config.json (main process); other settings or data than last time start from scratch."""
    config_path = job.output_dir / "train_config.json"
    old = read_json(config_path) if config_path.is_file() else {}
    if old.get("fingerprint") != fingerprint:
        for name in ("checkpoints", "adapter"):
            shutil.rmtree(job.output_dir / name, ignore_errors=True)
        for name in ("DONE", "log.jsonl", "loss.png"):
            (job.output_dir / name).unlink(missing_ok=True)
    record = {
        "fingerprint": fingerprint,
        "objective": job.objective,
        **({"objective_inputs": dict(inputs)} if inputs else {}),
        "model": job.model_path,
        "train_file": str(job.train_file),
        "train_file_sha256": train_sha,
        "config": job.config.model_dump(),
        "device": job.device,
        "world_size": world_size,
    }
    write_json(config_path, record)


def _train(job: LoraJob, callbacks: Sequence[Any]) -> tuple[Any, Any, int, Path]:
    """Train (resuming from the last checkpoint) and save what was trained (main process only);
    returns (trainer, train result, step resumed from, folder saved to)."""
    checkpoint = _last_checkpoint(job.output_dir / "checkpoints")
    resumed_step = int(checkpoint.name.split("-")[-1]) if checkpoint else 0
    log_path = job.output_dir / "log.jsonl"
    from metaconf.training.objectives import build_objective_trainer

    with quiet_libraries():
        trainer = build_objective_trainer(job, [_log_callback(log_path, resumed_step), *callbacks])
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        split = trainer.frozen_split
        trained_dir = job.output_dir / "adapter" if split is None else job.output_dir / "adapter.upper-layers"
        trainer.save_model(str(trained_dir))  # main process only (gathers shards under FSDP / ZeRO-3)
    return trainer, result, resumed_step, trained_dir


def _finish(job: LoraJob, fingerprint: str, trainer: Any, result: Any, resumed_step: int, trained_dir: Path) -> None:
    """The adapter folder, loss plot and result in train_config.json, then DONE (main process)."""
    out, split = job.output_dir, trainer.frozen_split
    adapter_dir = out / "adapter"
    if split is not None:  # renumber the upper model's layers onto the full model's
        from metaconf.training.frozen import save_full_adapter

        save_full_adapter(trained_dir, adapter_dir, split, job.model_path)
        shutil.rmtree(trained_dir, ignore_errors=True)
    trainer.processing_class.save_pretrained(str(adapter_dir))
    stable_adapter_config(adapter_dir)
    write_json(adapter_dir / ADAPTER_METADATA, {"objective": job.objective, "fingerprint": fingerprint}, sort_keys=True)
    if (out / "log.jsonl").is_file():
        plot_loss(out / "log.jsonl", out / "loss.png", title=f"{out.name}: loss")
    info = read_json(out / "train_config.json")
    info["result"] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    info["result"]["global_step"] = result.global_step
    info["result"]["resumed_from_step"] = resumed_step
    if split is not None:
        frozen = trainer.data_collator.frozen
        info["result"]["frozen_layers"] = {"layers": split, "tokens_computed": frozen.computed_tokens}
    write_json(out / "train_config.json", info)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    write_text_atomic(out / "DONE", fingerprint + "\n")


def _check(job: LoraJob) -> tuple[str, str, dict, bool]:
    """A job's fingerprint, its training file's hash and its objective's inputs, after checking the file and the
    objective (a clear line where either is wrong); and whether its folder already holds that finished adapter."""
    from metaconf.training.objectives import objective_inputs

    train_sha = file_sha256(job.train_file) if job.train_file.is_file() else ""
    load_chat_examples(job.train_file)  # fail early with a clear line
    inputs = objective_inputs(job)  # also refuses an unknown objective, or one whose inputs are missing
    fingerprint = _fingerprint(job.config, job.model_path, train_sha, job.device, inputs)
    done, adapter = job.output_dir / "DONE", job.output_dir / "adapter" / "adapter_config.json"
    finished = done.is_file() and done.read_text().strip() == fingerprint and adapter.is_file()
    return fingerprint, train_sha, inputs, finished


def train_lora(
    train_file: str | Path,
    output_dir: str | Path,
    model: str | Path = "embedded",
    config: LoraTrainConfig | None = None,
    *,
    callbacks: Sequence[Any] = (),
    frozen_states: dict | None = None,
    dtype: str | DtypeChoice = "auto",
    redo: bool = True,
    objective: str = "sft",
) -> Path:
    """Fine-tune a LoRA adapter on a chat JSONL file; returns the adapter folder (`output_dir/adapter`).

    Reuses a finished run with the same settings, model, data and objective; resumes an interrupted one. Safe under
    `torchrun` / `accelerate launch`: every rank trains, only the main process writes files. `dtype`: the study's
    model.dtype (auto | float32 | bfloat16 | float16), followed where `config.precision` is 'auto'. A finished
    adapter of other settings or data is replaced, or with `redo=False` refused before anything is deleted.
    `objective`: sft (default), brier or grpo (docs/training.md, 'Objectives').
    """
    import torch
    from accelerate import PartialState

    job = LoraJob(
        Path(train_file), Path(output_dir), model, config or LoraTrainConfig(), dtype, frozen_states, objective
    )
    adapter_dir, done = job.output_dir / "adapter", job.output_dir / "DONE"
    fingerprint, train_sha, inputs, finished = _check(job)
    if finished:
        return adapter_dir
    if done.is_file() and not redo:
        raise MetaconfError(
            f"{job.output_dir}: holds a finished adapter trained with other settings or data; pass --redo to "
            f"replace it, or train into another run folder"
        )
    # Joins the process group under torchrun / accelerate launch (gloo on CPU); one process otherwise
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:
        _start_record(job, fingerprint, train_sha, state.num_processes, inputs)
    state.wait_for_everyone()
    trainer, result, resumed_step, trained_dir = _train(job, callbacks)
    state.wait_for_everyone()
    if state.is_main_process:
        _finish(job, fingerprint, trainer, result, resumed_step, trained_dir)
    state.wait_for_everyone()
    return adapter_dir


def train_conditions(
    run_dir: str | Path,
    model: str | Path = "embedded",
    config: LoraTrainConfig | None = None,
    conditions: Sequence[str | Condition] = TRAINED_CONDITIONS,
    configs: Mapping[str, LoraTrainConfig] | None = None,
    dtype: str | DtypeChoice = "auto",
    training_sets: Mapping[str, str] | None = None,
    redo: bool = True,
    isolate: bool = False,
) -> dict[str, Path]:
    """Train each condition on `RUN/training_sets/<set>/train.jsonl` into `RUN/training/<condition>/`. A condition
    is a record (metaconf.conditions.Condition: its training set and objective) or a name (the set
    `training_sets[name]`, default the set of its name; objective sft); the settings are `configs[name]` where
    given, else `config`; `dtype` and `redo` as in `train_lora`. `isolate`: each condition that is not trained yet
    trains in a child process of its own (metaconf.processes; one more child first tells which are trained, so this
    process never imports torch), the lower-layer states they share passed on in `RUN/training/.frozen-states.pt`
    (removed at the end)."""
    run_dir = Path(run_dir)
    jobs = {}  # condition -> (train_lora's positional arguments, its keyword arguments)
    for entry in conditions:
        record = entry if isinstance(entry, Condition) else None
        cond = record.name if record else str(entry)
        training_set = record.training_set if record else (training_sets or {}).get(cond, cond)
        train_file = inside(run_dir, "training_sets", training_set or cond, "train.jsonl")
        if not train_file.is_file():
            raise DataError(f"{train_file}: training set for condition '{cond}' not found (run build-data first)")
        settings = (configs or {}).get(cond, config) or LoraTrainConfig()
        options = {"dtype": dtype, "redo": redo, "objective": record.objective if record else "sft"}
        jobs[cond] = ((train_file, inside(run_dir, "training", cond), model, settings), options)
    if not isolate:
        frozen_states: dict = {}  # lower-layer states shared by the conditions (their prompts overlap)
        adapters = {}
        for cond, (job, options) in jobs.items():
            adapters[cond] = train_lora(*job, frozen_states=frozen_states, **options)
            release_free_memory()  # the trainer and its model copy, before the next condition loads another
        return adapters
    trained, _ = call_in_child(_trained, list(jobs.values()), name="metaconf train (check)")
    shared = inside(run_dir, "training", FROZEN_STATES)
    shared.unlink(missing_ok=True)  # states a crashed run left: the model at its path may have changed since
    try:
        for (cond, (job, options)), done in zip(jobs.items(), trained, strict=True):
            if not done:
                call_in_child(_train_in_child, job, options, shared, name=f"metaconf train {cond}")
    finally:
        shared.unlink(missing_ok=True)
    return {cond: job[1] / "adapter" for cond, (job, _) in jobs.items()}


def _trained(jobs: list[tuple[tuple, dict]]) -> list[bool]:
    """Whether each (train_lora arguments, keyword arguments) job's folder holds its finished adapter (after the
    checks `train_lora` makes first: a clear line for a bad training file or objective)."""
    return [_check(LoraJob(*job[:4], options["dtype"], None, options["objective"]))[3] for job, options in jobs]


FROZEN_STATES = ".frozen-states.pt"  # RUN/training/.frozen-states.pt: the lower-layer states isolated trainings share


def _train_in_child(job: tuple, options: dict, shared: Path) -> Path:
    """`train_lora` in a child process (`train_conditions(isolate=True)`): the lower-layer states of the conditions
    trained before come from `shared`, and go back there with this one's added."""
    import torch

    states = torch.load(shared, weights_only=True) if shared.is_file() else {}
    known = sum(len(v) for v in states.values())
    adapter = train_lora(*job, frozen_states=states, **options)
    if sum(len(v) for v in states.values()) > known:
        with atomic_path(shared) as tmp:
            torch.save(states, tmp)
    return adapter


def merge_adapter(model: str | Path, adapter: str | Path, out_dir: str | Path) -> Path:
    """Fold a LoRA adapter into its base model and save the full model + tokenizer to `out_dir`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise MetaconfError(f"{adapter}: not a PEFT adapter folder (adapter_config.json missing)")
    model_path = resolve_model(model)
    with quiet_libraries():
        base = AutoModelForCausalLM.from_pretrained(model_path)
        _drop_gguf_marker(base)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    tok_source = adapter if (adapter / "tokenizer_config.json").is_file() else model_path
    tokenizer = AutoTokenizer.from_pretrained(str(tok_source))
    with atomic_folder(out_dir) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)
