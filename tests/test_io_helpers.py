"""The helpers said once: atomic writes (metaconf.io), the JSONL reader's errors, the file digest, the retry policy."""

import asyncio
import gzip
import hashlib
import os
import random

import pytest

from metaconf.errors import DataError
from metaconf.io import (
    atomic_folder,
    atomic_path,
    file_sha256,
    iter_jsonl_objects,
    read_json,
    read_jsonl,
    write_bytes_atomic,
    write_json,
    write_jsonl,
    write_text_atomic,
)
from metaconf.retry import RetriesExhausted, Retryable, RetryPolicy


def names(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------ atomic writes


def test_writes_land_whole_with_ordinary_permissions(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "a.txt", "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert names(tmp_path / "sub") == ["a.txt"]


def test_a_value_json_cannot_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = write_json(tmp_path / "m.json", {"a": 1})
    with pytest.raises(ValueError):
        write_json(path, {"a": float("nan")}, allow_nan=False)
    with pytest.raises(TypeError):
        write_jsonl(tmp_path / "m.json", [{"a": 1}, {"b": {1, 2}}])  # a set is not JSON
    assert read_json(path) == {"a": 1} and names(tmp_path) == ["m.json"]


def test_an_error_inside_atomic_path_keeps_the_old_content(tmp_path):
    target = write_text_atomic(tmp_path / "fig.png", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"  # savefig picks the format from the name
        tmp.write_text("half a figure")
        raise RuntimeError("the writer failed midway")
    assert target.read_text() == "old" and names(tmp_path) == ["fig.png"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and names(tmp_path) == ["fig.png"]


def test_atomic_folder_lands_whole_replaces_or_keeps(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(OSError), atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
        raise OSError("disk full while saving the weights")
    assert names(tmp_path) == []  # neither a half-written model nor its temp folder
    with atomic_folder(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"v1")
    with atomic_folder(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"v2")
    assert names(target) == ["weights.bin"] and (target / "weights.bin").read_bytes() == b"v2"
    with atomic_folder(target, replace=False) as tmp:  # another process finished first: its folder stays
        (tmp / "weights.bin").write_bytes(b"v3")
    assert (target / "weights.bin").read_bytes() == b"v2" and names(tmp_path) == ["model"]


def test_gz_jsonl_is_reproducible_and_reads_back(tmp_path):
    rows = [{"b": 1, "a": "ü"}, {"c": None}]
    first = write_jsonl(tmp_path / "x.jsonl.gz", rows, sort_keys=True).read_bytes()
    assert write_jsonl(tmp_path / "y.jsonl.gz", rows, sort_keys=True).read_bytes() == first  # no timestamp inside
    assert gzip.decompress(first).decode().splitlines()[0] == '{"a": "ü", "b": 1}'
    assert read_jsonl(tmp_path / "x.jsonl.gz") == rows


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20) + b"tail"
    (tmp_path / "w.bin").write_bytes(data)
    assert file_sha256(tmp_path / "w.bin") == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": 1}\n\n{oops\n', r"bad\.jsonl:3: invalid JSON \(Expecting property name"),
        ('{"a": 1}\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON object, got list"),
        ('{"a": 1}\n' + "[" * 100_000 + "\n", r"bad\.jsonl:2: JSON nested too deeply"),
    ],
)
def test_reader_errors_are_one_line_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        read_jsonl(path)
    assert "\n" not in str(err.value)


def test_missing_file_is_empty_only_when_asked(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(tmp_path / "none.jsonl")


def test_truncated_last_line_is_skipped_only_when_asked(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')  # a crash mid-append
    with pytest.raises(DataError, match=r"log\.jsonl:3: invalid JSON"):
        read_jsonl(path)
    assert read_jsonl(path, truncated_tail_ok=True) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"step": 2}')  # a complete last line without its newline is kept
    assert [n for n, _ in iter_jsonl_objects(path, truncated_tail_ok=True)] == [1, 2]
    path.write_text('{"step": 1}\n{broken\n{"step": 3}\n')  # damage before the last line is still an error
    with pytest.raises(DataError, match=r"log\.jsonl:2: invalid JSON"):
        read_jsonl(path, truncated_tail_ok=True)


def test_read_json_names_the_line(tmp_path):
    (tmp_path / "c.json").write_text('{\n  "a": 1,\n  oops\n}\n')
    with pytest.raises(DataError, match=r"c\.json:3: invalid JSON"):
        read_json(tmp_path / "c.json")


# ------------------------------------------------------------------------------------------------ retries


def flaky(failures, result="ok", retry_after=None):
    """An attempt that raises Retryable `failures` times, then returns `result`; counts its calls."""
    calls = []

    def attempt():
        calls.append(1)
        if len(calls) <= failures:
            raise Retryable(f"HTTP 503: busy ({len(calls)})", retry_after)
        return result

    return attempt, calls


def test_retries_then_succeeds_with_full_jitter_backoff():
    attempt, calls = flaky(3)
    waits = []
    policy = RetryPolicy(max_retries=5, base=0.5, cap=1.5, rng=random.Random(0))
    assert policy.call(attempt, sleep=waits.append) == "ok"
    assert len(calls) == 4 and len(waits) == 3
    assert all(0 <= w <= c for w, c in zip(waits, [0.5, 1.0, 1.5]))


def test_gives_up_after_max_retries_with_the_last_reason():
    attempt, calls = flaky(10)
    waits = []
    with pytest.raises(RetriesExhausted, match=r"after 3 attempts; last error: HTTP 503: busy \(3\)") as err:
        RetryPolicy(max_retries=2, base=0.01).call(attempt, sleep=waits.append)
    assert err.value.attempts == 3 and len(calls) == 3 and len(waits) == 2


def test_retry_after_is_honoured_and_time_limit_stops_early():
    attempt, calls = flaky(1, retry_after=7.0)
    waits = []
    assert RetryPolicy(max_retries=3).call(attempt, sleep=waits.append) == "ok"
    assert waits == [7.0]
    attempt, calls = flaky(5, retry_after=7.0)
    with pytest.raises(RetriesExhausted, match="after 1 attempts"):  # a 7 s wait would pass the 5 s budget
        RetryPolicy(max_retries=3, max_elapsed=5.0).call(attempt, sleep=waits.append)


def test_other_errors_are_not_retried():
    calls = []

    def refused():
        calls.append(1)
        raise PermissionError("401: bad key")

    with pytest.raises(PermissionError):
        RetryPolicy(max_retries=5).call(refused, sleep=lambda s: None)
    assert len(calls) == 1


def test_async_retries_share_the_policy():
    waits = []

    async def record(seconds):
        waits.append(seconds)

    def run(failures, max_retries):
        attempt, calls = flaky(failures)

        async def attempt_async():
            return attempt()

        return asyncio.run(RetryPolicy(max_retries=max_retries, base=0.01).acall(attempt_async, sleep=record))

    assert run(2, max_retries=2) == "ok" and len(waits) == 2
    with pytest.raises(RetriesExhausted, match="after 2 attempts"):
        run(5, max_retries=1)
