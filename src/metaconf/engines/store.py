"""An embedded SQLite store of completions: what makes every run resumable.

Each batch is written in one transaction as soon as it is produced (WAL mode), so a process killed at any moment
loses at most the batch in flight and never leaves a half-written one; a rerun is served from here.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from metaconf.engines.types import Completion
from metaconf.errors import EngineError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT NOT NULL,
    sample INTEGER NOT NULL,
    completion TEXT NOT NULL,
    model TEXT NOT NULL,
    adapter TEXT NOT NULL,
    params TEXT NOT NULL,
    prompt TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (key, sample)
)
"""
_COLUMNS = ["key", "sample", "completion", "model", "adapter", "params", "prompt", "created"]


class CompletionStore:
    """Completions keyed by (cache key, sample index). Safe to share between threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(_SCHEMA)
            columns = [row[1] for row in self.db.execute("PRAGMA table_info(completions)")]
        except (OSError, sqlite3.Error) as exc:
            raise EngineError(f"{self.path}: cannot open the completion store ({exc})") from None
        if columns != _COLUMNS:
            raise EngineError(f"{self.path}: not a metaconf completion store (table columns {columns})")
        self._lock = threading.Lock()

    def get_many(self, keys: list[str], n: int) -> dict[tuple[str, int], Completion]:
        """The stored completions among `keys` x samples 0..n-1 (whatever subset exists)."""
        found: dict[tuple[str, int], Completion] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self.db.execute(
                    f"SELECT key, sample, completion FROM completions WHERE sample < ? AND key IN ({marks})",
                    [n, *chunk],
                ).fetchall()
            for key, sample, payload in rows:
                try:
                    found[(key, sample)] = Completion.from_dict(json.loads(payload), cached=True)
                except (ValueError, KeyError, TypeError) as exc:
                    raise EngineError(f"{self.path}: unreadable completion {key[:12]}/{sample} ({exc})") from None
        return found

    def put_many(
        self,
        produced: Iterable[tuple[str, int, Completion]],
        *,
        model: str,
        adapter: str,
        params: str,
        prompts: dict[str, list[dict[str, str]]],
    ) -> None:
        """Store a batch in one transaction; a (key, sample) already stored is kept as it was (idempotent)."""
        now = time.time()
        rows = [
            (
                key,
                sample,
                json.dumps(c.to_dict(), ensure_ascii=False),
                model,
                adapter,
                params,
                json.dumps(prompts.get(key, []), ensure_ascii=False),
                now,
            )
            for key, sample, c in produced
        ]
        with self._lock, self.db:  # one transaction: all of the batch or none of it
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?,?)", rows)

    def count(self) -> int:
        """How many completions are stored (all models and settings together)."""
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> CompletionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
