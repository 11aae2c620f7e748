"""Hostile configs, data files and servers: each gives one clean line (naming the file, line or field) or the
right value; a second run on a busy run folder refuses; cache keys follow content, not paths.

(Hostile model output for the grader and parsers: test_hostile_outputs.py.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.fake_openai_server import FakeOpenAIServer
from metaconf.cli import main
from metaconf.data import load_dataset
from metaconf.errors import ConfigError, DataError, EngineError
from metaconf.lock import RunFolderBusy, RunLock
from metaconf.study.config import load_config

MINIMAL = {
    "model": {"engine": "embedded"},
    "data": {"train": [{"name": "gsm8k", "train": 4, "held_out": 2}]},
    "conditions": ["base"],
}
SRC = str(Path(__file__).parents[1] / "src")


def _with(**changes):
    return {**MINIMAL, **changes}


# ------------------------------------------------------------------------------------------------ configs
# (name, file content: bytes, str or a config dict, regex the one-line error must match)
CONFIGS = [
    ("binary", bytes(range(256)) * 4, r"X\.yaml:\d+: not UTF-8 text \(invalid byte at offset \d+\)"),
    ("nul bytes", b"name: a\x00b\n", r"X\.yaml: a binary file"),
    ("nested 5,000 deep", "a: " + "[" * 5000 + "]" * 5000, r"X\.yaml: nested too deeply"),
    ("nested 40 deep", "a: " + "[" * 40 + "]" * 40, r"X\.yaml: nested more than 32 levels"),
    (
        "duplicate key",
        "conditions: [base]\nconditions: [base, single]\n" + yaml.safe_dump({"data": MINIMAL["data"]}),
        r"X\.yaml:2: .*key 'conditions' given twice \(lines 1 and 2\)",
    ),
    ("duplicate nested key", "data:\n  train: []\n  train: []\n", r"X\.yaml:3: .*key 'train' given twice"),
    (
        "condition without a training set",
        _with(conditions=["base", "multitask"], targets={"sets": [{"name": "single", "task": "single"}]}),
        r"X\.yaml: field 'conditions\.1\.training_set': 'multitask' is trained on the training set 'multitask', but "
        r"targets\.sets has only single",
    ),
    (
        "unknown engine option",
        _with(model={"engine": "embedded", "options": {"bogus_kw": 1}}),
        r"X\.yaml: field 'model\.options\.bogus_kw': not an option of the embedded engine \(options: device, ",
    ),
    (
        "missing eval path",
        _with(data={**MINIMAL["data"], "eval": [{"name": "medqa", "path": "/nonexistent/x"}]}),
        r"X\.yaml: field 'data\.eval\.0\.path': /nonexistent/x not found",
    ),
    (
        "two files, one name",
        None,
        r"X\.yaml: fields 'data\.eval\.0' and 'data\.eval\.1' are both dataset "
        r"'validation'; give one of them a different label",
    ),
    (
        "label clashing with a registered name",
        _with(data={**MINIMAL["data"], "eval": [{"name": "medqa", "label": "gsm8k"}]}),
        r"fields 'data\.train\.0' and 'data\.eval\.0' are both dataset 'gsm8k'",
    ),
    (
        "label with a path in it",
        _with(data={**MINIMAL["data"], "eval": [{"name": "medqa", "label": "../x"}]}),
        r"field 'data\.eval\.0\.label': Value error, a name cannot hold a path separator",
    ),
    ("top level is a list", "- a\n- b\n", r"X\.yaml: expected a mapping of settings at the top level"),
    # found beyond the list
    (
        "YAML alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{k}: &{k} [{', '.join(['*' + p] * 10)}]\n" for p, k in zip("abcdefgh", "bcdefghi")),
        r"X\.yaml: nested more than 32 levels deep or more than 100,000 values",
    ),
    (
        "infinite temperature",
        _with(evaluation={"temperature": float("inf")}),
        r"field 'evaluation\.temperature': Input should be a finite number",
    ),
    ("negative seed", _with(evaluation={"seed": -1}), r"field 'evaluation\.seed': Input should be greater than"),
    (
        "a billion logprobs",
        _with(evaluation={"logprobs": 10**9}),
        r"field 'evaluation\.logprobs': Input should be less",
    ),
]


def _two_validation_files(tmp_path: Path) -> tuple[Path, Path]:
    paths = []
    for folder in ("a", "b"):
        path = tmp_path / folder / "validation.jsonl"
        path.parent.mkdir()
        path.write_text(
            "".join(json.dumps({"question": f"{folder} q{i}?", "answer": f"{folder}{i}"}) + "\n" for i in range(3))
        )
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("name,content,error", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_hostile_config_gives_one_line_naming_file_and_field(tmp_path, name, content, error):
    path = tmp_path / "X.yaml"
    if content is None:  # two evaluation files with the same file name in different folders
        a, b = _two_validation_files(tmp_path)
        content = _with(data={**MINIMAL["data"], "eval": [{"name": str(a), "n": 2}, {"name": str(b), "n": 2}]})
    if isinstance(content, dict):
        content = yaml.safe_dump(content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert re.search(error, message), message


def test_errors_after_reading_the_config_leave_no_run_folder_and_name_the_file(tmp_path, capsys):
    """Found while loading data (n too large) or when the engine fails: one line naming the config, no out/."""
    cases = [
        (
            _with(data={**MINIMAL["data"], "eval": [{"name": "medqa", "n": 900000}]}),
            r"X\.yaml: field 'data\.eval\.0\.n': 'medqa' has \d+ questions, fewer than n = 900000",
        ),
        (
            _with(data={"train": [{"name": "gsm8k", "train": 900000}]}),
            r"X\.yaml: field 'data\.train\.0': 'gsm8k' has \d+ questions, fewer than train \+ held_out",
        ),
        (
            _with(
                model={
                    "engine": "openai",
                    "name": "m",
                    "base_url": "http://127.0.0.1:9/v1",
                    "options": {"max_retries": 0},
                }
            ),
            r"server at http://127\.0\.0\.1:9/v1 failed for model 'm' after 1 attempts",
        ),
        (
            _with(
                model={
                    "engine": "openai",
                    "name": "m",
                    "base_url": "http://127.0.0.1:9/v1",
                    "options": {"concurrency": "many"},
                }
            ),
            r"X\.yaml: field 'model\.options\.concurrency': Input should be a valid integer",
        ),
    ]
    for raw, error in cases:
        config, out = tmp_path / "X.yaml", tmp_path / "out"
        config.write_text(yaml.safe_dump(raw))
        assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(error, err), err
        assert not out.exists()


def test_run_folder_names_that_cannot_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "X.yaml"
    config.write_text(yaml.safe_dump(_with(name="../../escape")))
    assert main(["run", str(config), "--quiet"]) == 2
    assert "field 'name': '../../escape' is not a folder name" in capsys.readouterr().err
    assert not (tmp_path.parent / "escape").exists()
    (tmp_path / "afile").write_text("x")
    config.write_text(yaml.safe_dump(MINIMAL))
    assert main(["run", str(config), "--out", "afile", "--quiet"]) == 2
    assert "afile: the run folder is a file" in capsys.readouterr().err


def test_an_existing_run_folder_is_kept_on_a_later_error(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    config = tmp_path / "X.yaml"
    config.write_text(
        yaml.safe_dump(
            _with(
                model={
                    "engine": "openai",
                    "name": "m",
                    "base_url": "http://127.0.0.1:9/v1",
                    "options": {"max_retries": 0},
                }
            )
        )
    )
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
    assert (out / "keep.txt").read_text() == "mine" and not (out / ".lock").exists()


# --------------------------------------------------------------------------------------------- data files
# (file name, bytes, regex of the one-line error or ("loads", the first question's text))
DATA = [
    (
        "bad.jsonl",
        b'{"question": "q1", "answer": "a"}\n{"question": "q\xff2", "answer": "b"}\n',
        r"bad\.jsonl:2: invalid UTF-8 \(byte 0xff at byte offset 49\)",
    ),
    ("bad.csv", b"question,answer\nq1,a\nq2,b\xc3\n", r"bad\.csv:3: invalid UTF-8 \(byte 0xc3 at byte offset 25\)"),
    ("bad.json", b'[{"question": "\xfe", "answer": "a"}]', r"bad\.json:1: invalid UTF-8 \(byte 0xfe"),
    (
        "deep.jsonl",
        ('{"question": ' + "[" * 100_000 + "]" * 100_000 + ', "answer": "a"}\n').encode(),
        r"deep\.jsonl:1: JSON nested too deeply",
    ),
    ("deep.json", ("[" * 100_000 + "]" * 100_000).encode(), r"deep\.json: JSON nested too deeply"),
    (
        "deepcell.csv",
        ('question,choices,answer\nq,"' + "[" * 100_000 + '",A\n').encode(),
        r"deepcell\.csv:2: choices '\[+' is not a list",
    ),
    (
        "obj.jsonl",
        b'{"question": "ok", "answer": "a"}\n{"question": {"nested": [1, 2]}, "answer": "a"}\n',
        r"obj\.jsonl:2: field 'question': expected text or a number, got an object",
    ),
    (
        "ansobj.jsonl",
        b'{"question": "ok", "answer": {"a": 1}}\n',
        r"ansobj\.jsonl:1: field 'answers': expected text or a number, got an object",
    ),
    (
        "anslist.jsonl",
        b'{"question": "ok", "answers": [["x"]]}\n',
        r"anslist\.jsonl:1: field 'answers': expected text or a number, got a list",
    ),
    (
        "choiceobj.jsonl",
        b'{"question": "ok", "choices": [{"t": 1}, "b"], "answer": "A"}\n',
        r"choiceobj\.jsonl:1: field 'choices': expected text or a number, got an object",
    ),
    (
        "idlist.jsonl",
        b'{"id": [1], "question": "ok", "answer": "a"}\n',
        r"idlist\.jsonl:1: field 'id': expected text or a number, got a list",
    ),
    ("unclosed.csv", b'question,answer\n"unclosed,a\n', r"unclosed\.csv:\d+: expected 2 columns"),
    ("bom.jsonl", b'\xef\xbb\xbf{"question": "q1", "answer": "a"}\n', ("loads", "q1")),
    ("bom.csv", b"\xef\xbb\xbfquestion,answer\nq1,a\n", ("loads", "q1")),
    ("bom.json", b'\xef\xbb\xbf[{"question": "q1", "answer": "a"}]', ("loads", "q1")),
    ("crlf.csv", b"question,answer\r\nq1,a\r\n", ("loads", "q1")),
]


@pytest.mark.parametrize("name,data,expected", DATA, ids=[d[0] for d in DATA])
def test_hostile_data_file(tmp_path, name, data, expected):
    """`expected`: a regex the one-line DataError must match, or ("loads", first question's text)."""
    path = tmp_path / name
    path.write_bytes(data)
    if isinstance(expected, tuple):
        assert load_dataset(str(path))[0].question == expected[1]
        return
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert "\n" not in message and re.search(expected, message), message


# ------------------------------------------------------------------------------------- user datasets
def test_dataset_labels_and_domains_name_the_results(tmp_path):
    from helpers.study import ScriptedStudy
    from metaconf.study.config import parse_config

    a, b = _two_validation_files(tmp_path)
    raw = {
        "name": "labels",
        "data": {
            "train": [{"name": "gsm8k", "train": 6, "held_out": 3}],
            "eval": [
                {"name": str(a), "n": 3, "label": "medmcqa-val", "domain": "medical"},
                {"name": str(b), "n": 3, "label": "law-val", "domain": "legal"},
                {"name": "truthfulqa", "n": 3, "label": "tqa", "domain": "myths"},
            ],
        },
        "conditions": ["base"],
        "targets": {"n_samples": 2},
        "evaluation": {"pairs_per_dataset": 2, "consistency_samples": 2, "n_boot": 50},
    }
    run_dir = tmp_path / "run"
    study = ScriptedStudy(parse_config(raw), run_dir, quiet=True)
    study.run(("data", "consistency", "evaluate", "metrics", "report"))
    assert {name: len(qs) for name, qs in study.eval_sets.items()} == {
        "gsm8k": 3,
        "medmcqa-val": 3,
        "law-val": 3,
        "tqa": 3,
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    shown = {(r["dataset"], r.get("domain")) for r in metrics["rows"] if r["dataset"] != "gsm8k"}
    assert {("medmcqa-val", "medical"), ("law-val", "legal"), ("tqa", "myths")} <= shown, shown
    markdown, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    for row in (
        "| medmcqa-val | medical | new domain | 0 | 3 |",
        "| law-val | legal | new domain | 0 | 3 |",
        "| tqa | myths | new domain | 0 | 3 |",
    ):
        assert row in markdown
    assert all(label in html for label in ("medmcqa-val", "law-val", "tqa", "myths"))
    assert all(
        q.id.startswith(("medmcqa-val/", "law-val/", "tqa/", "gsm8k/")) for qs in study.eval_sets.values() for q in qs
    )


# ------------------------------------------------------------------------------------------- run lock
def test_a_second_lock_on_one_folder_refuses_naming_the_holder(tmp_path):
    first = RunLock(tmp_path)
    assert first.acquire() is None
    with pytest.raises(
        RunFolderBusy,
        match=rf"in use by another metaconf run \(pid {os.getpid()} on host "
        rf"{socket.gethostname()}, since",
    ):
        RunLock(tmp_path).acquire()
    first.release()
    with RunLock(tmp_path):  # free again
        pass


def test_two_real_runs_on_one_folder_and_a_killed_holder(tmp_path, tiny_model):
    """P1 takes the lock and is frozen (SIGSTOP) mid-run; P2 on the same --out refuses, naming P1's pid and host,
    and computes nothing; P1 is SIGKILLed; P3 detects the stale lock, takes it over and finishes."""
    config = tmp_path / "X.yaml"
    config.write_text(
        yaml.safe_dump(
            _with(model={"engine": "hf", "name": str(tiny_model)}, targets={"n_samples": 2, "max_new_tokens": 4})
        )
    )
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "metaconf", "run", str(config), "--out", str(out), "--quiet"]
    p1 = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = out / ".lock"
        while p1.poll() is None and not (lock.is_file() and f'"pid": {p1.pid}' in lock.read_text()):
            time.sleep(0.02)
        assert p1.poll() is None, p1.stderr.read().decode()
        os.kill(p1.pid, signal.SIGSTOP)
        stored = sorted(p.name for p in out.iterdir())
        p2 = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert p2.returncode == 2
        err = p2.stderr.strip()
        assert len(err.splitlines()) == 1
        assert f"in use by another metaconf run (pid {p1.pid} on host {socket.gethostname()}" in err
        assert sorted(p.name for p in out.iterdir()) == stored  # P2 wrote nothing
        os.kill(p1.pid, signal.SIGKILL)
        p1.wait()
    finally:
        if p1.poll() is None:
            p1.kill()
            p1.wait()
    p3 = subprocess.run([*cmd[:-1], "--stages", "data"], env=env, capture_output=True, text=True)
    assert p3.returncode == 0, p3.stderr
    assert f"took over the lock of an ended run (pid {p1.pid} on host {socket.gethostname()})" in p3.stderr
    assert not (out / ".lock").exists()  # released at the end


# ------------------------------------------------------------------------------------------ cache keys
def _fake_adapter(folder: Path, modules: list[str], base: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"weights" * 100)
    (folder / "adapter_config.json").write_text(
        json.dumps({"r": 4, "target_modules": modules, "base_model_name_or_path": base})
    )
    return folder


def test_adapter_identity_is_its_content_not_its_path(tmp_path, monkeypatch):
    from metaconf.engines.hf import HFEngine, adapter_fingerprint

    one = _fake_adapter(tmp_path / "run1" / "adapter", ["q_proj", "v_proj", "o_proj"], "/models/a")
    two = _fake_adapter(tmp_path / "elsewhere" / "copy", ["o_proj", "q_proj", "v_proj"], "models/a")
    other = _fake_adapter(tmp_path / "run3" / "adapter", ["q_proj"], "/models/a")
    assert adapter_fingerprint(one) == adapter_fingerprint(two) != adapter_fingerprint(other)
    monkeypatch.chdir(tmp_path)
    assert adapter_fingerprint("run1/adapter") == adapter_fingerprint(one)
    engine = object.__new__(HFEngine)  # the identity alone, without loading a model
    engine.adapter_path, engine._adapter_fingerprint = "run1/adapter", adapter_fingerprint("run1/adapter")
    relative = engine.adapter_identity
    engine.adapter_path, engine._adapter_fingerprint = str(one), adapter_fingerprint(one)
    assert engine.adapter_identity == relative and "run1" not in relative


def test_adapter_config_is_written_with_sorted_target_modules(tmp_path):
    from metaconf.training.lora import stable_adapter_config

    folder = _fake_adapter(tmp_path / "a", ["v_proj", "k_proj", "q_proj"], "/m")
    stable_adapter_config(folder)
    assert json.loads((folder / "adapter_config.json").read_text())["target_modules"] == ["k_proj", "q_proj", "v_proj"]


# ------------------------------------------------------------------------------------------------ HTTP
def test_a_200_with_a_body_that_is_not_the_gzip_it_claims_is_retried_then_one_line(monkeypatch):
    from metaconf.engines import openai as openai_mod
    from metaconf.engines.openai import OpenAIEngine

    async def no_sleep(seconds):
        pass

    monkeypatch.setattr(openai_mod, "_sleep", no_sleep)
    messages = [{"role": "user", "content": "hi"}]
    with FakeOpenAIServer(models=["m"]) as server:
        server.fail_next("badgzip", times=2)
        out = OpenAIEngine(base_url=server.url, model="m", quiet=True).generate([messages], n=1)
        assert out[0][0].text.startswith("echo hi")
        server.fail_next("badgzip", times=3)
        with pytest.raises(EngineError, match="after 3 attempts; last error: a reply body that could not be decoded"):
            OpenAIEngine(base_url=server.url, model="m", quiet=True, max_retries=2).generate([messages], n=1, seed=1)


def test_a_lone_surrogate_from_a_server_is_stored_and_written_not_a_crash(tmp_path):
    """JSON may carry "\\ud800" (invalid in UTF-8): SQLite and every UTF-8 file refuse it; it becomes '?'."""
    from metaconf.engines.openai import OpenAIEngine
    from metaconf.io import read_jsonl, write_jsonl

    messages = [{"role": "user", "content": "hi"}]
    with FakeOpenAIServer(models=["m"], respond=lambda *_: "Answer: \ud800 12") as server:
        engine = OpenAIEngine(base_url=server.url, model="m", quiet=True, store=tmp_path / "c.sqlite")
        first = engine.generate([messages], n=1)[0][0]
        again = engine.generate([messages], n=1)[0][0]
    assert first.text == again.text == "Answer: ? 12" and again.cached
    write_jsonl(tmp_path / "p.jsonl", [{"raw": first.text}])
    assert read_jsonl(tmp_path / "p.jsonl") == [{"raw": "Answer: ? 12"}]


@pytest.mark.slow  # two LoRA trainings, each in a fresh interpreter importing torch + transformers + TRL
def test_two_trainings_in_processes_with_different_hash_seeds_give_the_same_adapter_identity(tmp_path, tiny_model):
    """PEFT writes target_modules from a set (its order follows PYTHONHASHSEED); metaconf writes them sorted, so
    two identical trainings give byte-identical adapter_config.json files and one adapter identity."""
    pytest.importorskip("trl")
    from helpers.training_data import write_train_file
    from metaconf.engines.hf import adapter_fingerprint

    script = (
        "import sys; from metaconf.training import LoraTrainConfig, train_lora;"
        "train_lora(sys.argv[3], sys.argv[2], sys.argv[1], LoraTrainConfig(rank=2, alpha=4.0, batch_size=4,"
        " max_steps=1, max_length=256, top_layers=1, seed=0))"
    )
    train = str(write_train_file(tmp_path / "train.jsonl", n=4))
    configs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"run{hash_seed}"
        env = {
            **os.environ,
            "PYTHONHASHSEED": hash_seed,
            "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        done = subprocess.run(
            [sys.executable, "-c", script, str(tiny_model), str(out), train], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        configs.append((out / "adapter" / "adapter_config.json").read_bytes())
        modules = json.loads(configs[-1])["target_modules"]
        assert modules == sorted(modules) and len(modules) == 7
    assert configs[0] == configs[1]
    assert adapter_fingerprint(tmp_path / "run1" / "adapter") == adapter_fingerprint(tmp_path / "run2" / "adapter")
