"""THE kill-and-resume test: a real subprocess generating through an engine with a store is killed with SIGKILL
mid-run, rerun to completion, and compared with an uninterrupted run in a fresh store."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import resume_worker
from helpers.processes import kill_when
from metaconf.engines.base import prompt_text

WORKER = Path(__file__).parent / "helpers" / "resume_worker.py"


def stored_rows(store: Path) -> list[tuple[str, int, str, str]]:
    """(key, sample, prompt text, completion JSON) of every stored row; readable while another process writes."""
    if not store.exists():
        return []
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=60)
    try:
        rows = db.execute("SELECT key, sample, prompt, completion FROM completions").fetchall()
    except sqlite3.OperationalError:  # the table is not created yet
        rows = []
    finally:
        db.close()
    return [(k, s, prompt_text(json.loads(p)), c) for k, s, p, c in rows]


def run_worker(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True)


def kill_mid_run(args: list[str], store: Path) -> int:
    """Start the worker, SIGKILL it as soon as the store holds some rows; returns how many rows it held then."""
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        kill_when(proc, lambda: stored_rows(store), lambda: proc.stderr.read().decode())
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return len(stored_rows(store))


def read_calls(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()]


def check_kill_and_resume(tmp_path: Path, common: list[str], prompts: int, n: int, stall: int) -> None:
    store, fresh = tmp_path / "run.sqlite", tmp_path / "fresh.sqlite"
    total = prompts * n

    def args(store_path, name, extra=()):
        return [
            *common,
            "--prompts",
            str(prompts),
            "--n",
            str(n),
            "--store",
            str(store_path),
            "--out",
            str(tmp_path / f"{name}.json"),
            "--calls",
            str(tmp_path / f"{name}.calls"),
            *extra,
        ]

    at_kill = kill_mid_run(args(store, "killed", ["--stall-after-batches", str(stall)]), store)
    assert 0 < at_kill < total
    before = {(p, s) for _, s, p, _ in stored_rows(store)}
    assert len(before) == at_kill

    resumed = run_worker(args(store, "resumed"))
    assert resumed.returncode == 0, resumed.stderr
    calls = read_calls(tmp_path / "resumed.calls")
    assert len(calls) == len(set(calls)) == total - at_kill  # asked once for each missing completion...
    assert not set(calls) & before  # ...and never for a stored one

    rows = stored_rows(store)
    assert len(rows) == total and len({(k, s) for k, s, _, _ in rows}) == total  # nothing lost or duplicated
    assert {s for _, s, _, _ in rows} == set(range(n))

    # the uninterrupted reference run: same worker code, in this process (saves a third interpreter start)
    assert resume_worker.main(args(fresh, "fresh")) == 0
    assert len(read_calls(tmp_path / "fresh.calls")) == total
    assert json.loads((tmp_path / "resumed.json").read_text()) == json.loads((tmp_path / "fresh.json").read_text())
    assert {(k, s): c for k, s, _, c in rows} == {(k, s): c for k, s, _, c in stored_rows(fresh)}


def test_kill_and_resume_scripted_engine(tmp_path):
    check_kill_and_resume(
        tmp_path, ["--kind", "scripted", "--delay", "0.005", "--batch-size", "4"], prompts=30, n=3, stall=5
    )


@pytest.mark.slow  # a tiny model, but two fresh interpreters importing torch + transformers (tens of seconds)
def test_kill_and_resume_hf_engine(tmp_path, tiny_model):
    # a small token budget makes HFEngine plan several batches (about two prompts each)
    check_kill_and_resume(
        tmp_path,
        ["--kind", "hf", "--model", str(tiny_model), "--max-new-tokens", "5", "--max-batch-tokens", "300"],
        prompts=8,
        n=3,
        stall=1,
    )
