"""Content hashes for stable question ids and seeded, order-independent ranking."""

from __future__ import annotations

import hashlib


def short_hash(*parts: object, n: int = 12) -> str:
    """A short hex digest of `parts`: the same text gives the same id on every machine and Python version."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def rank_key(seed: int, salt: str, qid: str) -> str:
    """Sort key that orders question ids pseudo-randomly but reproducibly for a given seed and purpose."""
    return hashlib.sha256(f"{salt}\x1f{seed}\x1f{qid}".encode()).hexdigest()
