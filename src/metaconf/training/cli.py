"""`metaconf train` and `metaconf merge`. Options for LoRA come from LoraTrainConfig's fields and descriptions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from metaconf.conditions import TRAINED_CONDITIONS
from metaconf.errors import ConfigError
from metaconf.training.config import LoraTrainConfig

LIST_FIELDS = {"target_modules": str, "layers_to_transform": int}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per LoraTrainConfig field; unset options keep the config's (or the preset's) value."""
    group = parser.add_argument_group("LoRA settings (LoraTrainConfig)")
    for name, field in LoraTrainConfig.model_fields.items():
        default = field.default
        help_text = f"{field.description} (default: {default})"
        if name in LIST_FIELDS:
            group.add_argument(_flag(name), nargs="+", type=LIST_FIELDS[name], default=None, help=help_text)
        elif isinstance(default, bool) and name != "gradient_checkpointing":
            group.add_argument(_flag(name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif name in {"gradient_checkpointing", "precision", "bf16_mode"}:
            choices = {"gradient_checkpointing": ["auto", "on", "off"], "precision": ["auto", "fp32", "bf16", "fp16"],
                       "bf16_mode": ["weights", "autocast"]}[name]
            group.add_argument(_flag(name), choices=choices, default=None, help=help_text)
        else:
            kind = type(default) if default is not None else (float if "rate" in name else int)
            group.add_argument(_flag(name), type=kind, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> LoraTrainConfig:
    """The preset (demo or default) with every option the user gave on top."""
    base = LoraTrainConfig.for_cpu_demo() if args.demo_defaults else LoraTrainConfig()
    if args.config:
        try:
            base = LoraTrainConfig(**{**base.model_dump(), **json.loads(Path(args.config).read_text())})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"{args.config}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
    updates: dict[str, Any] = {}
    for name in LoraTrainConfig.model_fields:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "gradient_checkpointing" and value != "auto":
            value = value == "on"
        if name == "target_modules" and value == ["all-linear"]:
            value = "all-linear"
        updates[name] = value
    try:
        return LoraTrainConfig(**{**base.model_dump(), **updates})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"training option {_flag(str(err['loc'][0]))}: {err['msg']}") from None


def _train(args: argparse.Namespace) -> int:
    run = Path(args.run)
    if not run.is_dir():
        raise ConfigError(f"{run}: run folder not found")
    if args.hosted:
        from metaconf.training.hosted import HostedTrainConfig, hosted_conditions

        hosted = HostedTrainConfig(
            base_model=args.hosted, base_url=args.base_url, api_key_env=args.api_key_env,
            suffix=args.suffix, epochs=args.hosted_epochs, restart_failed=args.restart_failed,
        )
        for cond, model in hosted_conditions(run, hosted, args.conditions).items():
            print(f"{cond}: {model}")
        return 0
    from metaconf.training.lora import train_conditions

    config = config_from_args(args)
    for cond, adapter in train_conditions(run, args.model, config, args.conditions).items():
        print(f"{cond}: {adapter}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from metaconf.training.lora import merge_adapter

    print(merge_adapter(args.model, args.adapter, args.out))
    return 0


def register(subparsers: Any) -> None:
    """Add `train` and `merge` to the `metaconf` command."""
    p = subparsers.add_parser(
        "train",
        help="fine-tune one LoRA adapter (or hosted job) per condition from RUN/training_sets/",
        description="Trains RUN/training_sets/<cond>/train.jsonl into RUN/training/<cond>/ (adapter/, log.jsonl, "
        "loss.png, DONE). Finished conditions are skipped, interrupted ones resume. Runs under "
        "`torchrun` / `accelerate launch` for several processes or GPUs.",
    )
    p.add_argument("--run", required=True, help="the run folder")
    p.add_argument("--conditions", nargs="+", default=list(TRAINED_CONDITIONS), help="conditions to train (default: all three)")
    p.add_argument("--model", default="embedded", help="'embedded' (SmolLM2-135M-Instruct) or a model folder / hub id")
    p.add_argument("--demo-defaults", action="store_true",
                   help="start from LoraTrainConfig.for_cpu_demo() (fast CPU settings) instead of the defaults")
    p.add_argument("--config", help="a JSON file of LoraTrainConfig fields")
    add_config_options(p)
    h = p.add_argument_group("hosted fine-tuning (OpenAI-compatible API) instead of local LoRA")
    h.add_argument("--hosted", metavar="BASE_MODEL", help="fine-tune this provider model, e.g. gpt-4.1-mini-2025-04-14")
    h.add_argument("--base-url", default="https://api.openai.com/v1", help="the provider's API base URL")
    h.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    h.add_argument("--suffix", help="suffix for the fine-tuned model's name")
    h.add_argument("--hosted-epochs", type=int, help="n_epochs for the provider (default: its choice)")
    h.add_argument("--restart-failed", action="store_true", help="start a new job where the recorded one failed")
    p.set_defaults(func=_train)

    m = subparsers.add_parser("merge", help="fold a LoRA adapter into its base model and save the full model")
    m.add_argument("--model", default="embedded", help="the base model: 'embedded' or a folder / hub id")
    m.add_argument("--adapter", required=True, help="the adapter folder (RUN/training/<cond>/adapter)")
    m.add_argument("--out", required=True, help="where to write the merged model")
    m.set_defaults(func=_merge)
