"""Work run in a child process (metaconf.processes) and the study stages that use it: results and errors come back,
the child's memory does not stay with the parent, a killed parent takes its child along."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import children
from helpers.processes import kill_when
from helpers.study import SMALL, FailingStudy, ScriptedStudy
from metaconf.errors import DataError
from metaconf.memory import MIB, current_rss
from metaconf.processes import ChildFailed, call_in_child
from metaconf.study.config import parse_config
from metaconf.study.stages import STAGES

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG are Linux's")


@linux
def test_the_child_holds_the_memory_and_hands_back_result_and_peak():
    before = current_rss() / MIB
    result, peak = call_in_child(children.hold, 400)
    assert result["pid"] != os.getpid() and result["parent"] == os.getpid()
    assert result["sum"] == 400 * MIB // 4096  # every page was written
    assert result["rss_mib"] >= 400 and peak >= result["rss_mib"] - 1  # MiB, rounded to 0.1
    assert current_rss() / MIB < before + 100  # the 400 MiB were the child's, gone with it


def test_a_metaconf_error_in_the_child_is_raised_here_as_itself():
    with pytest.raises(DataError, match=r"^data.jsonl: line 3: not JSON$"):
        call_in_child(children.fail_with_data_error, "data.jsonl")


def test_an_error_pickle_cannot_carry_comes_back_as_its_text(capfd):
    with pytest.raises(RuntimeError, match="_Unpicklable: the handle broke"):
        call_in_child(children.fail_unpicklably)
    assert "Traceback" in capfd.readouterr().err  # the child printed where it failed


def test_a_child_killed_without_a_result_is_a_one_line_error_naming_its_exit():
    with pytest.raises(ChildFailed, match=r"^worker: its process ended without a result \(exit status -9, killed"):
        call_in_child(children.die_by_signal, name="worker")


@linux
def test_killing_the_parent_kills_its_child(tmp_path):
    pid_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    parent = subprocess.Popen([sys.executable, "-m", "helpers.children", str(pid_file)], env=env)
    kill_when(parent, pid_file.exists, lambda: "the child never wrote its pid")
    child = int(pid_file.read_text())
    for _ in range(600):  # the kernel delivers the parent-death signal at once; this only waits for the reaping
        if not Path(f"/proc/{child}").exists() or "Z" in _state(child):
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in _state(child), "the child outlived its killed parent"


def _state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return "Z (gone)"


def test_the_stages_that_load_the_model_run_apart_and_train_isolates_each_condition():
    assert [s.name for s in STAGES if s.own_process] == ["targets", "consistency", "evaluate", "baselines"]


@linux
def test_an_isolated_study_stores_the_same_results_and_each_model_stage_peak(tmp_path):
    config = parse_config({**SMALL, "conditions": ["base"], "baselines": ["consistency", "constant"]})
    stages = ("data", "targets", "consistency", "evaluate", "baselines", "metrics")
    here, apart = tmp_path / "here", tmp_path / "apart"
    ScriptedStudy(config, here, quiet=True).run(stages)
    ScriptedStudy(config, apart, quiet=True, isolate=True).run(stages)
    for name in ("consistency/eval.jsonl", "consistency/train.jsonl", "training_sets/single/train.jsonl"):
        assert (apart / name).read_text() == (here / name).read_text(), name
    for path in sorted((here / "predictions").glob("*.jsonl")):
        assert (apart / "predictions" / path.name).read_text() == path.read_text(), path.name
    assert _metric_rows(apart) == _metric_rows(here)
    record = json.loads((apart / "memory.json").read_text())
    assert set(record["child_processes"]) == {"targets", "consistency", "evaluate", "baselines"}
    assert "child_processes" not in json.loads((here / "memory.json").read_text())
    for stage, child in record["child_processes"].items():  # the stage's figure adds what the parent held
        assert record["stages"][stage] > child > 10


def _metric_rows(run_dir: Path) -> list:
    return json.loads((run_dir / "metrics.json").read_text())["rows"]


def test_an_error_in_an_isolated_stage_is_raised_as_itself_and_stored_work_stays(tmp_path):
    config = parse_config({**SMALL, "conditions": ["base"]})
    run_dir = tmp_path / "run"
    with pytest.raises(DataError, match=r"consistency: no room left$"):
        FailingStudy(config, run_dir, quiet=True, isolate=True).run(("data", "targets", "consistency"))
    assert (run_dir / "consistency" / "train.jsonl").is_file()  # the targets stage's child stored it
    with pytest.raises(DataError):  # failing before anything is stored: the run folder it created goes
        FailingStudy(config, tmp_path / "fresh", quiet=True, isolate=True).run(("data", "consistency"))
    assert not (tmp_path / "fresh").exists()


def test_the_parent_of_an_isolated_study_never_imports_torch(tmp_path):
    """The stages' children load the model; the process that runs them keeps only the orchestration (the number
    format is resolved in a child too), so it stays small."""
    code = (
        "import sys, json\n"
        "from helpers.study import SMALL, ScriptedStudy\n"
        "from metaconf.study.config import parse_config\n"
        "config = parse_config({**SMALL, 'conditions': ['base']})\n"
        f"ScriptedStudy(config, {str(tmp_path / 'run')!r}, quiet=True, isolate=True).run(\n"
        "    ('data', 'targets', 'consistency', 'evaluate', 'metrics'))\n"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["dtype"]["dtype"] in ("bfloat16", "float32")


def test_metaconf_caps_onednn_primitive_cache_unless_the_user_chose():
    code = "import os, metaconf; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    ours = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    theirs = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert (ours.stdout.strip(), theirs.stdout.strip()) == ("8", "64")


def test_a_stage_child_takes_its_parents_number_format_without_printing_it_again(capsys):
    from metaconf.precision import DtypeChoice, announce
    from metaconf.study.models import StudyModels

    choice = DtypeChoice("float16", "auto", "stage-child-test", "auto: a test's device")  # a key no test printed
    models = StudyModels(parse_config(SMALL), Path("unused"), store=lambda: None)
    models.use_dtype(choice)
    announce(choice)  # what the engine does when it loads
    assert models.dtype() is choice and capsys.readouterr().err == ""
