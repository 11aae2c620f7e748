"""Time the demo's multitask condition (sft) and multitask_brier (brier) on one run folder's multitask set.

usage: python benchmarks/time_objectives.py RUN STUDY.yaml [--epochs N]
RUN/training_sets/multitask/{train.jsonl, examples.jsonl} must exist (`metaconf run STUDY.yaml --out RUN --stages
data targets`). Trains into RUN/training/<condition>/ with the study's LoRA settings (epochs overridden), sft first,
then brier sharing its lower-layer states; prints one JSON line per objective.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from metaconf.study.config import load_config
from metaconf.training import train_lora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--epochs", type=float, default=1.0)
    args = parser.parse_args()
    config = load_config(args.config)
    states: dict = {}
    train = args.run / "training_sets" / "multitask" / "train.jsonl"
    for name in ("multitask", "multitask_brier"):
        record = config.condition(name)
        lora = config.lora_for(name).model_copy(update={"epochs": args.epochs, "logging_steps": 1})
        start = time.time()
        out = args.run / "training" / name
        train_lora(
            train, out, "embedded", lora, frozen_states=states, dtype=config.model.dtype, objective=record.objective
        )
        info = json.loads((out / "train_config.json").read_text())
        result = info["result"]
        row = {
            "condition": name,
            "objective": record.objective,
            "wall_s": round(time.time() - start, 1),
            "train_runtime_s": result["train_runtime"],
            "steps": result["global_step"],
            "precision": info["device"]["precision"],
            "lower_layer_tokens": result.get("frozen_layers", {}).get("tokens_computed"),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
