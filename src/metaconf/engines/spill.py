"""A dict of tensors kept on disk instead of in memory: for caches whose entries are written once and read a few
times, such as the lower-layer prefill that the base model shares with the adapters of a study (`SharedPrefill`).

Held in memory, the shared prefill of a study's evaluation grows with every batch the base model prefills (the
lower layers' KV cache and hidden states of every evaluation prompt: about 2 GB for the demo's 135M model, ~25 GB
for a 1.7B model without grouped-query attention) and stays until the last condition is evaluated. On disk, only
the batch in use is resident; the operating system's page cache keeps recently written files fast to read back.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^[0-9a-f]{8,128}$")  # entries are keyed by hex digests (`stable_hash`): safe file names


class SpilledEntries(MutableMapping[str, Any]):
    """Values (nested dicts, lists and tuples of tensors) stored one file per key in `folder`, which this object
    owns: it is emptied on creation and removed by `close()`. Reads load a fresh copy; exact round trip. Values are
    read back with torch's weights-only loader: `types` are the classes besides tensors and containers they may hold
    (by default the prefill's `Layout`)."""

    def __init__(self, folder: str | Path, types: tuple[type, ...] | None = None):
        if types is None:
            from metaconf.engines.prefill import Layout

            types = (Layout,)
        self.types = list(types)
        self.folder = Path(folder)
        shutil.rmtree(self.folder, ignore_errors=True)  # what a crashed run left behind
        self.folder.mkdir(parents=True)
        self._keys: set[str] = set()

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise KeyError(f"not a hex digest: {key!r}")
        return self.folder / f"{key}.pt"

    def __setitem__(self, key: str, value: Any) -> None:
        import torch

        path = self._path(key)
        tmp = path.with_suffix(".tmp")
        torch.save(value, tmp)  # a scratch cache: no fsync (a crash empties the folder on the next run anyway)
        os.replace(tmp, path)
        self._keys.add(key)

    def __getitem__(self, key: str) -> Any:
        import torch

        if key not in self._keys:
            raise KeyError(key)
        with torch.serialization.safe_globals(self.types):
            return torch.load(self._path(key), weights_only=True)

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._path(key).unlink(missing_ok=True)
        self._keys.discard(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        """Delete every entry's file (without loading it, as MutableMapping.clear would)."""
        for key in list(self._keys):
            del self[key]

    def close(self) -> None:
        """Remove the folder and everything in it."""
        self._keys.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
