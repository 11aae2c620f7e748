"""A study whose conditions differ only in their objective, end to end on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl")

from helpers.processes import kill_when  # noqa: E402
from helpers.study import SMALL  # noqa: E402
from metaconf.study.config import load_config, parse_config  # noqa: E402
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


# -------------------------------------------------------------------------- kill -9 during each kind of training
SRC = str(Path(__file__).parents[1] / "src")
MAX_STEPS = 4
KILLED = """
conditions:
  - base
  - single
  - {name: single_brier, training_set: single, objective: brier}
  - {name: single_grpo, training_set: single, objective: grpo}
"""


def _checkpoint_step(folder: Path) -> int:
    """The step of a training folder's last complete checkpoint (0: none), the one `train_lora` resumes from."""
    from metaconf.training.lora import _last_checkpoint

    last = _last_checkpoint(folder / "checkpoints")
    return int(last.name.split("-")[-1]) if last else 0


def _kill_once_checkpointed(cmd: list[str], env: dict[str, str], folder: Path, log: Path) -> int:
    """Start `metaconf run`, SIGKILL it as soon as `folder` holds a complete checkpoint but no DONE; the step seen."""
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    kill_when(proc, lambda: _checkpoint_step(folder), lambda: log.read_text()[-3000:], poll=0.02)
    assert not (folder / "DONE").exists(), "killed too late: the condition finished before the kill"
    return _checkpoint_step(folder)


@pytest.mark.slow  # four `metaconf run` processes (each importing torch) training sft, brier and grpo adapters
def test_a_study_killed_during_each_kind_of_training_resumes_each_without_redoing_finished_ones(tmp_path, tiny_model):
    """kill -9 of a real `metaconf run` while an sft condition trains, then while a brier one does, then a grpo one:
    each rerun resumes the killed condition from its checkpoint, retrains no finished one, and the fourth run ends."""
    raw = {
        **SMALL,
        **yaml.safe_load(KILLED),
        "model": {"engine": "hf", "name": str(tiny_model)},
        "targets": {"n_samples": 3, "max_new_tokens": 24, "sets": [{"name": "single", "task": "single"}]},
        "training": {
            "lora": {
                "rank": 2,
                "alpha": 4,
                "batch_size": 4,
                "top_layers": 1,
                "logging_steps": 1,
                "max_steps": MAX_STEPS,
                "save_steps": 1,  # a resumable checkpoint after every step
                "grpo_generations": 2,
            }
        },
        "evaluation": {"pairs_per_dataset": 3, "consistency_samples": 2, "n_boot": 50},
        "baselines": [],
    }
    config, run_dir = tmp_path / "study.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(raw))
    # the training sets from the scripted model (the random model's answers never parse: no examples); the CLI
    # then runs every later stage, as `metaconf run` does after its targets stage
    TinyModelStudy(load_config(config), run_dir, quiet=True).run(("data", "targets"))
    cmd = [sys.executable, "-m", "metaconf", "run", str(config), "--out", str(run_dir), "--quiet", "--stages"]
    cmd += ["train", "consistency", "evaluate", "baselines", "metrics", "report"]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    training = run_dir / "training"

    seen = {"single": _kill_once_checkpointed(cmd, env, training / "single", tmp_path / "run1.err")}
    assert not (training / "single_brier").exists()
    seen["single_brier"] = _kill_once_checkpointed(cmd, env, training / "single_brier", tmp_path / "run2.err")
    stamp = (training / "single" / "DONE").stat().st_mtime_ns  # the second run finished sft before brier started
    assert not (training / "single_grpo").exists()
    seen["single_grpo"] = _kill_once_checkpointed(cmd, env, training / "single_grpo", tmp_path / "run3.err")
    assert (training / "single_brier" / "DONE").is_file()  # the third run finished the killed brier condition
    brier_done = (training / "single_brier" / "DONE").stat().st_mtime_ns
    finished = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]

    assert (training / "single" / "DONE").stat().st_mtime_ns == stamp  # never retrained
    assert (training / "single_brier" / "DONE").stat().st_mtime_ns == brier_done
    for name, step in seen.items():
        result = json.loads((training / name / "train_config.json").read_text())["result"]
        assert result["resumed_from_step"] >= max(step, 1), (name, step, result)  # resumed, not restarted
        assert result["global_step"] == MAX_STEPS
        steps = [json.loads(line)["step"] for line in (training / name / "log.jsonl").read_text().splitlines()]
        assert steps == list(range(1, MAX_STEPS + 1)), (name, steps)  # each step logged once, none lost
        assert (training / name / "DONE").is_file() and not (training / name / "checkpoints").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["objectives"] == {"single": "sft", "single_brier": "brier", "single_grpo": "grpo"}
    assert {r["condition"] for r in metrics["rows"]} == {"base", "single", "single_brier", "single_grpo"}
    assert (run_dir / "report.md").is_file()
