"""A study whose conditions differ only in their objective, end to end on the tiny model."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("trl")

from helpers.study import SMALL  # noqa: E402
from metaconf.study.config import parse_config  # noqa: E402
from test_study import TinyModelStudy  # noqa: E402

OBJECTIVES = """
conditions:
  - base
  - single
  - {name: single_brier, training_set: single, objective: brier, color: "#D55E00"}
"""


@pytest.mark.slow  # trains two LoRA adapters on the tiny model and evaluates three conditions: minutes on 2 cores
def test_a_brier_condition_lands_in_the_study_next_to_its_sft_twin(tmp_path, tiny_model):
    from PIL import Image

    raw = {
        **SMALL,
        **yaml.safe_load(OBJECTIVES),
        "model": {"engine": "hf", "name": str(tiny_model)},
        "targets": {"n_samples": 3, "max_new_tokens": 24, "sets": [{"name": "single", "task": "single"}]},
        "training": {
            "lora": {"rank": 2, "alpha": 4, "max_steps": 2, "batch_size": 4, "top_layers": 1, "logging_steps": 1}
        },
        "evaluation": {"pairs_per_dataset": 3, "consistency_samples": 2, "n_boot": 50},
        "baselines": [],
    }
    run_dir = tmp_path / "run"
    TinyModelStudy(parse_config(raw), run_dir, quiet=True).run()

    for name, objective in (("single", "sft"), ("single_brier", "brier")):
        folder = run_dir / "training" / name
        assert json.loads((folder / "train_config.json").read_text())["objective"] == objective
        assert json.loads((folder / "adapter" / "metaconf.json").read_text())["objective"] == objective
    log = [json.loads(line) for line in (run_dir / "training" / "single_brier" / "log.jsonl").read_text().splitlines()]
    assert log and all("confidence_brier" in row for row in log)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objectives"] == {"single": "sft", "single_brier": "brier"}
    assert {(c["condition"], c["reference"]) for c in metrics["contrasts"]} == {("single_brier", "single")}
    assert any(c["condition"] == "single_brier" for c in metrics["comparisons"])  # and against base, as before
    report = (run_dir / "report.md").read_text()
    assert "Another objective beats SFT on the same training set" in report
    assert "single\\_brier − single" in report  # Markdown escapes the underscore
    pixels = 0  # drawn in its own colour in the figures
    for png in (run_dir / "plots").glob("*.png"):
        image = Image.open(png).convert("RGB")
        pixels += sum(count for count, rgb in image.getcolors(1 << 24) if rgb == (0xD5, 0x5E, 0x00))
    assert pixels > 500
    # a rerun finds both adapters finished and trains nothing again
    stamp = (run_dir / "training" / "single_brier" / "DONE").stat().st_mtime_ns
    TinyModelStudy(parse_config(raw), run_dir, quiet=True).run()
    assert (run_dir / "training" / "single_brier" / "DONE").stat().st_mtime_ns == stamp
