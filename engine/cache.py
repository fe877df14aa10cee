"""LRU cache of dequantization results, keyed by a digest of everything the result depends on.

The key covers the codes' bytes, shape and dtype and the exact parameters (scale and zero point bytes, axis),
so a change of parameters can never serve a stale or wrong-shaped answer. Cached arrays are handed out
read-only. Arrays larger than `max_elements` bypass the cache: hashing them would cost more than recomputing.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from .qparams import QParams

MAX_CACHED_ELEMENTS = 1 << 20


def cache_key(q: npt.NDArray[np.generic], params: QParams, tag: str = "") -> bytes:
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{tag}|{q.dtype.str}|{q.shape}|{params.axis}|{params.block_size}|".encode())
    h.update(np.ascontiguousarray(params.scale, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(params.zero_point, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(q).data)
    return h.digest()


class DequantCache:
    def __init__(self, capacity: int, max_elements: int = MAX_CACHED_ELEMENTS) -> None:
        self.capacity = max(0, capacity)
        self.max_elements = max_elements
        self._items: OrderedDict[bytes, npt.NDArray[np.float32]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def accepts(self, q: npt.NDArray[np.generic]) -> bool:
        return self.capacity > 0 and q.size <= self.max_elements

    def get(self, key: bytes) -> npt.NDArray[np.float32] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        value.setflags(write=False)
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()
