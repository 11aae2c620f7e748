"""Hosted fine-tuning against a local OpenAI-compatible fake server (127.0.0.1, ephemeral port; never the network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from metaconf.errors import DataError
from metaconf.training.hosted import HostedJobError, HostedTrainConfig, hosted_conditions, run_hosted_job

KEY = "sk-test-secret-123"
STEPS = ["validating_files", "queued", "running", "running", "succeeded"]


class FakeProvider:
    """Files and fine-tuning jobs in memory; a job moves one status forward at every GET."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.gets: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    self.reply(401, {"error": {"message": "Incorrect API key provided"}})
                    return False
                return True

            def do_POST(self):
                provider.requests.append(("POST", self.path))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.authorised():
                    return
                if self.path == "/v1/files":
                    boundary = self.headers["Content-Type"].split("boundary=")[1].encode()
                    parts = [p for p in body.split(b"--" + boundary) if b"filename=" in p]
                    content = parts[0].split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
                    assert b'name="purpose"' in body and b"fine-tune" in body
                    if b"REJECT" in content:
                        return self.reply(
                            400,
                            {
                                "error": {
                                    "message": "Invalid file format: example 2 has no assistant message",
                                    "code": "invalid_file",
                                }
                            },
                        )
                    fid = f"file-{len(provider.files) + 1}"
                    provider.files[fid] = content
                    return self.reply(200, {"id": fid, "object": "file", "purpose": "fine-tune", "status": "processed"})
                if self.path == "/v1/fine_tuning/jobs":
                    req = json.loads(body)
                    if req["training_file"] not in provider.files:
                        return self.reply(400, {"error": {"message": f"file {req['training_file']} not found"}})
                    jid = f"ftjob-{len(provider.jobs) + 1}"
                    fail = b"FAIL_JOB" in provider.files[req["training_file"]]
                    provider.jobs[jid] = {
                        "id": jid,
                        "status": "validating_files",
                        "model": req["model"],
                        "training_file": req["training_file"],
                        "fine_tuned_model": None,
                        "error": None,
                        "_fail": fail,
                        "_events": [],
                    }
                    provider.gets[jid] = 0
                    return self.reply(200, self.public(provider.jobs[jid]))
                self.reply(404, {"error": {"message": "no such route"}})

            def public(self, job: dict) -> dict:
                return {k: v for k, v in job.items() if not k.startswith("_")}

            def do_GET(self):
                provider.requests.append(("GET", self.path))
                if not self.authorised():
                    return
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")  # v1 fine_tuning jobs ID [events]
                job = provider.jobs.get(parts[3]) if len(parts) >= 4 else None
                if job is None:
                    return self.reply(404, {"error": {"message": "job not found"}})
                if len(parts) == 5 and parts[4] == "events":
                    after = self.path.split("after=")[1].split("&")[0] if "after=" in self.path else None
                    events = job["_events"]
                    if after:
                        events = events[[e["id"] for e in events].index(after) + 1 :]
                    return self.reply(200, {"object": "list", "data": list(reversed(events)), "has_more": False})
                provider.gets[job["id"]] += 1
                step = STEPS[min(provider.gets[job["id"]], len(STEPS) - 1)]
                if job["_fail"] and step == "running":
                    job.update(
                        status="failed",
                        error={"code": "invalid_training_file", "message": "Training file has too few examples"},
                    )
                elif job["status"] not in {"failed", "succeeded"}:
                    job["status"] = step
                    if step == "succeeded":
                        job["fine_tuned_model"] = f"ft:{job['model']}:metaconf:{job['id']}"
                        job["trained_tokens"] = 1234
                n = len(job["_events"])
                job["_events"].append({"id": f"ftevent-{n + 1}", "message": f"status {job['status']}", "level": "info"})
                self.reply(200, self.public(job))

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(monkeypatch):
    monkeypatch.setenv("TEST_FT_KEY", KEY)
    p = FakeProvider()
    yield p
    p.close()


def write_examples(path: Path, n: int = 10, marker: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Q{i}? {marker}"},
                {"role": "assistant", "content": f"Answer: A\nConfidence: {50 + i}"},
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(provider: FakeProvider, **kw) -> HostedTrainConfig:
    return HostedTrainConfig(
        base_model="gpt-test-mini",
        base_url=provider.url,
        api_key_env="TEST_FT_KEY",
        poll_interval=0.0,
        max_retries=0,
        **kw,
    )


def test_job_runs_to_completion_and_records_the_model(provider, tmp_path):
    train = write_examples(tmp_path / "hosted.jsonl")
    lines: list[str] = []
    record = run_hosted_job(train, tmp_path / "job", config(provider, suffix="mc"), progress=lines.append)
    assert record["fine_tuned_model"] == "ft:gpt-test-mini:metaconf:ftjob-1"
    saved = json.loads((tmp_path / "job" / "hosted_job.json").read_text())
    assert saved["job_id"] == "ftjob-1" and saved["status"] == "succeeded" and saved["file_id"] == "file-1"
    assert saved["fine_tuned_model"] == record["fine_tuned_model"]
    assert provider.files["file-1"] == train.read_bytes()
    assert any("running" in line for line in lines) and any("status succeeded" in line for line in lines)
    # events are shown once each, in order
    event_lines = [line for line in lines if line.startswith("[ftjob-1] status")]
    assert event_lines == [f"[ftjob-1] {e['message']}" for e in provider.jobs["ftjob-1"]["_events"]]
    # the API key is never written anywhere
    for f in (tmp_path / "job").iterdir():
        assert KEY not in f.read_text()
    assert all(KEY not in line for line in lines)

    before = len(provider.requests)  # a finished job is reused without a single request
    again = run_hosted_job(train, tmp_path / "job", config(provider), progress=lines.append)
    assert again["fine_tuned_model"] == record["fine_tuned_model"] and len(provider.requests) == before


def test_rerun_after_a_crash_reattaches_instead_of_paying_again(provider, tmp_path):
    train = write_examples(tmp_path / "hosted.jsonl")

    def crash_when_running(line: str) -> None:
        if "running after" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_hosted_job(train, tmp_path / "job", config(provider), progress=crash_when_running)
    saved = json.loads((tmp_path / "job" / "hosted_job.json").read_text())
    assert saved["job_id"] == "ftjob-1" and saved["status"] == "running" and "fine_tuned_model" not in saved
    lines: list[str] = []
    record = run_hosted_job(train, tmp_path / "job", config(provider), progress=lines.append)
    assert record["fine_tuned_model"] == "ft:gpt-test-mini:metaconf:ftjob-1"
    assert provider.count("POST", "/v1/files") == 1 and provider.count("POST", "/v1/fine_tuning/jobs") == 1
    assert lines[0].startswith("reattaching to fine-tuning job ftjob-1")


def test_rejected_file_is_one_line_with_the_servers_message(provider, tmp_path):
    train = write_examples(tmp_path / "hosted.jsonl", marker="REJECT")
    with pytest.raises(HostedJobError, match=r"server answered 400: Invalid file format: example 2 has no "):
        run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)
    assert provider.count("POST", "/v1/fine_tuning/jobs") == 0


def test_failed_job_reports_the_server_message_and_is_not_silently_restarted(provider, tmp_path):
    train = write_examples(tmp_path / "hosted.jsonl", marker="FAIL_JOB")
    with pytest.raises(HostedJobError, match=r"job ftjob-1 failed: Training file has too few examples"):
        run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)
    assert json.loads((tmp_path / "job" / "hosted_job.json").read_text())["status"] == "failed"
    with pytest.raises(HostedJobError, match="restart"):  # rerun: the same error, no new job
        run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)
    assert provider.count("POST", "/v1/fine_tuning/jobs") == 1
    with pytest.raises(HostedJobError, match="ftjob-2 failed"):  # asked to restart: a new job on the same file
        run_hosted_job(train, tmp_path / "job", config(provider, restart_failed=True), progress=lambda line: None)
    assert provider.count("POST", "/v1/files") == 1


def test_wrong_key_missing_key_bad_file_and_changed_data(provider, tmp_path, monkeypatch):
    train = write_examples(tmp_path / "hosted.jsonl")
    monkeypatch.setenv("TEST_FT_KEY", "sk-wrong")
    with pytest.raises(HostedJobError, match="401: Incorrect API key provided"):
        run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)
    monkeypatch.delenv("TEST_FT_KEY")
    with pytest.raises(Exception, match="TEST_FT_KEY"):
        run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)
    monkeypatch.setenv("TEST_FT_KEY", KEY)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        run_hosted_job(bad, tmp_path / "job2", config(provider), progress=lambda line: None)
    uploads = provider.count("POST", "/v1/files")
    few = write_examples(tmp_path / "few.jsonl", n=9)  # the provider's minimum, checked before paying
    with pytest.raises(DataError, match=r"few.jsonl: 9 examples; hosted fine-tuning needs at least 10"):
        run_hosted_job(few, tmp_path / "job3", config(provider), progress=lambda line: None)
    assert provider.count("POST", "/v1/files") == uploads
    run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)
    write_examples(train, n=11)  # the data changed under a recorded job: refuse rather than pay silently
    with pytest.raises(HostedJobError, match="another training file"):
        run_hosted_job(train, tmp_path / "job", config(provider), progress=lambda line: None)


def test_unreachable_server_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_FT_KEY", KEY)
    cfg = HostedTrainConfig(
        base_model="m", base_url="http://127.0.0.1:9/v1", api_key_env="TEST_FT_KEY", max_retries=0, poll_interval=0
    )
    with pytest.raises(HostedJobError, match="cannot reach http://127.0.0.1:9/v1"):
        run_hosted_job(write_examples(tmp_path / "h.jsonl"), tmp_path / "job", cfg, progress=lambda line: None)


def test_hosted_conditions_use_the_run_folder(provider, tmp_path):
    run = tmp_path / "run"
    write_examples(run / "training_sets" / "single" / "hosted.jsonl")
    write_examples(run / "training_sets" / "pairwise" / "hosted.jsonl", n=11)
    models = hosted_conditions(run, config(provider), ["single", "pairwise"], progress=lambda line: None)
    assert models == {"single": "ft:gpt-test-mini:metaconf:ftjob-1", "pairwise": "ft:gpt-test-mini:metaconf:ftjob-2"}
    assert (run / "training" / "pairwise" / "hosted_job.json").is_file()


def test_study_entry_point_reads_the_study_config(provider, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from metaconf.conditions import as_condition
    from metaconf.training.hosted import run_hosted_conditions

    run = tmp_path / "run"
    write_examples(run / "training_sets" / "multitask" / "hosted.jsonl")
    study = SimpleNamespace(
        model=SimpleNamespace(name="served-name", base_url=provider.url, api_key_env="TEST_FT_KEY"),
        training=SimpleNamespace(hosted_base_model="gpt-test-mini"),
        conditions=[as_condition("base"), as_condition("multitask")],
    )
    import metaconf.training.hosted as hosted

    original = hosted.HostedTrainConfig

    class FastPoll(original):  # the study's config has no poll interval; keep the test instant
        def __init__(self, **kw):
            super().__init__(**{"poll_interval": 0.0, "max_retries": 0, **kw})

    monkeypatch.setattr(hosted, "HostedTrainConfig", FastPoll)
    models = run_hosted_conditions(run, study, ["multitask"])
    assert models == {"multitask": "ft:gpt-test-mini:metaconf:ftjob-1"}
    job = json.loads((run / "training" / "multitask" / "hosted_job.json").read_text())
    assert job["base_model"] == "gpt-test-mini" and job["fine_tuned_model"] == models["multitask"]
