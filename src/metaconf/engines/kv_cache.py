"""The hf engine's KV cache: a DynamicCache whose layers write each decode step in place (ReservedLayer).

Imports transformers: the hf engine imports this module when it first decodes."""

from __future__ import annotations

from typing import Any

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def new_cache(config: Any, reserve: int) -> DynamicCache:
    """A DynamicCache whose full-attention layers write new tokens into spare room instead of concatenating."""
    cache = DynamicCache(config=config)
    layers = getattr(cache, "layers", None)
    if layers:
        for i, layer in enumerate(layers):
            if type(layer) is DynamicLayer:
                layers[i] = ReservedLayer(reserve)
    return cache


class ReservedLayer(DynamicLayer):
    """Keys/values are views into a buffer with `reserve` free positions: a decode step writes one position
    in place (DynamicLayer copies the whole cache with torch.cat every step). A batch reselection replaces
    the tensors; the next update then moves them into a fresh buffer."""

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self._kbuf = self._vbuf = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, add = self.get_seq_length(), key_states.shape[-2]
        kb = self._kbuf
        if (
            kb is None
            or n == 0
            or self.keys.data_ptr() != kb.data_ptr()
            or kb.shape[0] != key_states.shape[0]
            or n + add > kb.shape[-2]
        ):
            cap = n + add + self.reserve
            kb = key_states.new_empty((*key_states.shape[:2], cap, key_states.shape[-1]))
            vb = value_states.new_empty((*value_states.shape[:2], cap, value_states.shape[-1]))
            if n:
                kb[:, :, :n] = self.keys
                vb[:, :, :n] = self.values
            self._kbuf, self._vbuf = kb, vb
        self._kbuf[:, :, n : n + add] = key_states
        self._vbuf[:, :, n : n + add] = value_states
        self.keys = self._kbuf[:, :, : n + add]
        self.values = self._vbuf[:, :, : n + add]
        return self.keys, self.values

    def _owns_view(self) -> bool:
        return self._kbuf is not None and self.get_seq_length() > 0 and self.keys.data_ptr() == self._kbuf.data_ptr()

    def _reselect(self, pick) -> None:
        """Apply a batch reselection to the whole buffer: one copy, and the spare room is kept."""
        n = self.keys.shape[-2]
        self._kbuf, self._vbuf = pick(self._kbuf), pick(self._vbuf)
        self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

    def _compact(self, keep: list[int]) -> None:
        """Keep rows `keep` (ascending) by moving them down within the buffer: no second buffer, whose copy
        would briefly double the cache's memory when finished rows are dropped."""
        n = self.keys.shape[-2]
        for buf in (self._kbuf, self._vbuf):
            for j, src in enumerate(keep):
                if src != j:
                    buf[j].copy_(buf[src])
        self._kbuf, self._vbuf = self._kbuf[: len(keep)], self._vbuf[: len(keep)]
        self.keys, self.values = self._kbuf[:, :, :n], self._vbuf[:, :, :n]

    def batch_select_indices(self, indices) -> None:
        keep = indices.tolist() if self._owns_view() else None
        if keep is not None and len(keep) < self._kbuf.shape[0] and all(a < b for a, b in zip(keep, keep[1:])):
            self._compact(keep)  # finished rows dropped: in place
        elif self._owns_view():
            self._reselect(lambda t: t.index_select(0, indices))
        else:
            super().batch_select_indices(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._owns_view():
            self._reselect(lambda t: t.repeat_interleave(repeats, dim=0))
        else:
            super().batch_repeat_interleave(repeats)
