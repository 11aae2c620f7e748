"""Hosted fine-tuning through an OpenAI-compatible API (upload file, create job, poll), resumable and paid once.

The job's state lives in `RUN/training/<cond>/hosted_job.json`, written atomically at every step: the uploaded
file id right after the upload, the job id right after the job is created (before any polling), the status as it
changes, and `fine_tuned_model` at the end. Rerunning reattaches to the job in flight, and a finished job is reused
without a single request. The API key is read from an environment variable and never written anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from metaconf.bounds import SEED_MAX
from metaconf.errors import MetaconfError
from metaconf.io import file_sha256, read_json, write_json
from metaconf.retry import RetriesExhausted, Retryable, RetryPolicy, parse_retry_after, retryable_status
from metaconf.targets.export import validate_hosted_file
from metaconf.text import redact

TERMINAL = {"succeeded", "failed", "cancelled"}
STATE_FILE = "hosted_job.json"
RETRY_CAP_S = 60.0  # the longest backoff between two tries of one request


class HostedJobError(MetaconfError):
    """The provider refused the file or the job failed; the message carries the server's own words."""


class HostedTrainConfig(BaseModel):
    """Where and how to run a hosted fine-tuning job."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(description="The provider's model to fine-tune, e.g. gpt-4.1-mini-2025-04-14.")
    base_url: str = Field("https://api.openai.com/v1", description="The API's base URL (OpenAI-compatible).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    suffix: str | None = Field(None, description="Suffix for the fine-tuned model's name.")
    epochs: int | None = Field(None, le=100, ge=1, description="n_epochs hyperparameter; None: the provider chooses.")
    seed: int | None = Field(0, le=SEED_MAX, description="Seed passed to the provider (None: let it choose).")
    poll_interval: float = Field(15.0, le=3600, ge=0, description="Seconds between status checks.")
    request_timeout: float = Field(120.0, le=86_400, gt=0, description="Seconds before one HTTP request times out.")
    max_retries: int = Field(
        5, le=100, ge=0, description="Retries of a request that failed with a network error, 429 or a transient 5xx."
    )
    restart_failed: bool = Field(False, description="Start a new job when the recorded one failed or was cancelled.")


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    if isinstance(err, str):
        return err
    return json.dumps(body)[:300]


class HostedClient:
    """The few OpenAI-compatible endpoints fine-tuning needs, retried (metaconf.retry) on network errors, 429 and
    transient 5xx."""

    def __init__(
        self, base_url: str, api_key: str, timeout: float = 120.0, max_retries: int = 5, retry_wait: float = 1.0
    ):
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy(max_retries=max_retries, base=retry_wait, cap=RETRY_CAP_S)
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise Retryable(redact(f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})")) from None
            if response.status_code < 400:
                return response.json()
            failure = f"server answered {response.status_code}: {_server_message(response)}"
            if retryable_status(response.status_code):
                raise Retryable(failure, parse_retry_after(response.headers))
            raise HostedJobError(f"{what}: {failure}")

        try:
            return self.retry.call(attempt)
        except RetriesExhausted as exc:
            tries = f" ({exc.attempts} attempts)" if exc.attempts > 1 else ""
            raise HostedJobError(f"{what}: {exc.reason}{tries}") from None

    def upload_file(self, path: Path) -> dict[str, Any]:
        return self._request(  # the bytes, not an open file: a retry sends the whole file again
            "POST",
            "/files",
            f"upload of {path}",
            data={"purpose": "fine-tune"},
            files={"file": (path.name, path.read_bytes(), "application/jsonl")},
        )

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/fine_tuning/jobs", "creating the fine-tuning job", json=body)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/fine_tuning/jobs/{job_id}", f"checking job {job_id}")

    def events(self, job_id: str, after: str | None = None) -> list[dict[str, Any]]:
        """The job's events newer than `after`, oldest first."""
        params = {"limit": 100, **({"after": after} if after else {})}
        body = self._request("GET", f"/fine_tuning/jobs/{job_id}/events", f"events of job {job_id}", params=params)
        return list(reversed(body.get("data", [])))  # the API lists newest first


def _stderr_progress(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


def run_hosted_job(
    train_file: str | Path,
    job_dir: str | Path,
    config: HostedTrainConfig,
    progress: Callable[[str], None] = _stderr_progress,
    client: HostedClient | None = None,
) -> dict[str, Any]:
    """Fine-tune `config.base_model` on `train_file` with the provider; returns the job record (see module doc).

    The record's `fine_tuned_model` names the result. Reattaches to a job recorded in `job_dir`, reuses a finished one.
    """
    train_file, job_dir = Path(train_file), Path(job_dir)
    state_path = job_dir / STATE_FILE
    sha = file_sha256(train_file) if train_file.is_file() else ""
    identity = {
        "base_url": redact(config.base_url.rstrip("/")),
        "base_model": config.base_model,
        "training_file_sha256": sha,
    }
    state: dict[str, Any] = read_json(state_path) if state_path.is_file() else {}
    if state and any(state.get(k) != v for k, v in identity.items()):
        raise HostedJobError(
            f"{state_path}: records job {state.get('job_id') or '(none yet)'} for another training file, model or "
            "server; delete this file to start a new (paid) job"
        )
    if state.get("status") == "succeeded" and state.get("fine_tuned_model"):
        return state
    if state.get("status") in {"failed", "cancelled"}:
        if not config.restart_failed:
            raise HostedJobError(
                f"job {state['job_id']} {state['status']}: {state.get('error') or 'no message from the server'} "
                f"(recorded in {state_path}; rerun with restart_failed / --restart-failed to start a new job)"
            )
        state = {k: v for k, v in state.items() if k not in {"job_id", "status", "error", "last_event_id"}}

    api_key = os.environ.get(config.api_key_env)
    if not api_key:
        raise MetaconfError(f"hosted fine-tuning needs an API key in the environment variable {config.api_key_env}")
    own_client = client is None
    client = client or HostedClient(config.base_url, api_key, config.request_timeout, config.max_retries)

    def save(**changes: Any) -> None:
        state.update(changes, updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        write_json(state_path, state)

    try:
        state.update(identity, training_file=str(train_file))
        if not state.get("job_id"):
            if not state.get("file_id"):
                validate_hosted_file(train_file)
                uploaded = client.upload_file(train_file)
                if uploaded.get("status") == "error":
                    raise HostedJobError(
                        f"{train_file}: file rejected: {uploaded.get('status_details') or 'no details from the server'}"
                    )
                save(file_id=uploaded["id"])
                progress(f"uploaded {train_file.name} as {uploaded['id']}")
            body: dict[str, Any] = {"training_file": state["file_id"], "model": config.base_model}
            if config.suffix:
                body["suffix"] = config.suffix
            if config.seed is not None:
                body["seed"] = config.seed
            if config.epochs:
                body["hyperparameters"] = {"n_epochs": config.epochs}
            job = client.create_job(body)
            save(job_id=job["id"], status=job.get("status", "created"))
            progress(f"created fine-tuning job {job['id']} ({config.base_model})")
        else:
            progress(f"reattaching to fine-tuning job {state['job_id']} ({state.get('status')})")
        return _poll(client, state, save, config, progress)
    finally:
        if own_client:
            client.close()


def _poll(
    client: HostedClient,
    state: dict[str, Any],
    save: Callable[..., None],
    config: HostedTrainConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    job_id = state["job_id"]
    started = time.monotonic()
    while True:
        job = client.get_job(job_id)
        for event in client.events(job_id, after=state.get("last_event_id")):
            progress(f"[{job_id}] {event.get('message', '')}")
            save(last_event_id=event.get("id"))
        status = job.get("status", "unknown")
        if status != state.get("status"):
            save(status=status, trained_tokens=job.get("trained_tokens"))
            progress(f"[{job_id}] {status} after {time.monotonic() - started:.0f}s")
        if status == "succeeded":
            save(fine_tuned_model=job.get("fine_tuned_model"), trained_tokens=job.get("trained_tokens"))
            return state
        if status in TERMINAL:
            error = job.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            save(error=message)
            raise HostedJobError(f"job {job_id} {status}: {message or 'no message from the server'}")
        time.sleep(config.poll_interval)


def hosted_conditions(
    run_dir: str | Path,
    config: HostedTrainConfig,
    conditions: Sequence[str],
    progress: Callable[[str], None] = _stderr_progress,
    training_sets: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Run one hosted job per condition from `RUN/training_sets/<set>/hosted.jsonl` (the set: `training_sets[cond]`,
    default the set of the condition's name); returns the model names."""
    run_dir = Path(run_dir)
    models = {}
    for cond in conditions:
        folder = run_dir / "training_sets" / (training_sets or {}).get(cond, cond)
        train_file = folder / "hosted.jsonl" if (folder / "hosted.jsonl").is_file() else folder / "train.jsonl"
        record = run_hosted_job(
            train_file, run_dir / "training" / cond, config, progress=lambda line, c=cond: progress(f"{c}: {line}")
        )
        models[cond] = record["fine_tuned_model"]
    return models


def run_hosted_conditions(run_dir: str | Path, study_config: Any, conditions: Sequence[str]) -> dict[str, str]:
    """The study orchestrator's entry: hosted jobs for `conditions`, configured from a StudyConfig.

    Uses `training.hosted_base_model` (else `model.name`), and the model section's `base_url` / `api_key_env`.
    """
    model, training = study_config.model, study_config.training
    base_model = getattr(training, "hosted_base_model", None) or model.name
    if not base_model:
        raise MetaconfError("hosted training needs training.hosted_base_model or model.name")
    config = HostedTrainConfig(
        base_model=base_model,
        base_url=model.base_url or HostedTrainConfig.model_fields["base_url"].default,
        api_key_env=model.api_key_env,
    )
    sets = {c.name: c.training_set for c in study_config.conditions if c.trained}
    return hosted_conditions(run_dir, config, conditions, training_sets=sets)
