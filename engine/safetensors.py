"""The safetensors format, read and written here rather than through the `safetensors` package (which the engine
may not import): an 8-byte little-endian header length N, N bytes of JSON, then the tensors' bytes.

The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
end of the header), plus an optional "__metadata__" of string values. `parse_header` accepts exactly what the
reference implementation accepts and refuses everything a lying header could use: a length beyond the file or
above the format's 100 MB cap, JSON that is not an object (or repeats a name), unknown dtypes, shapes that are not
lists of non-negative integers, dtype x shape disagreeing with the byte span, spans out of bounds, overlapping or
leaving a hole, and data that does not end where the file ends (a truncated file). `encode_header` writes the
header of a file whose tensors are laid out back to back in the given order, padded with spaces to 8 bytes as
the reference writer does, so that the data starts aligned.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

import ml_dtypes
import numpy as np

from .errors import CheckpointError

MAX_HEADER_BYTES: Final = 100_000_000  # the reference implementation's cap on N
ALIGNMENT: Final = 8  # the header is padded with spaces to this, as the reference writer does
METADATA_KEY: Final = "__metadata__"
MAX_DIMS: Final = 16

# The format's dtype names and their numpy dtypes (little-endian, as the format stores them). BF16 and FP8 come
# from ml_dtypes, as numpy has none.
DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
FLOAT_DTYPES: Final = frozenset({"F16", "BF16", "F32", "F64"})  # what a job quantizes; the rest passes through


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file: its bytes are [begin, end) of the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclasses.dataclass(frozen=True)
class Header:
    entries: tuple[Entry, ...]  # in the order of their bytes
    metadata: dict[str, str]
    data_start: int  # file offset of the data section: 8 + N


def _bad(message: str, code: str = "model.header_invalid") -> CheckpointError:
    return CheckpointError(message, code=code)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _bad(f"the safetensors header names {key[:200]!r} twice")
        seen[key] = value
    return seen


def parse_header(head: bytes, file_size: int, read: Any) -> Header:
    """Validate the header of a file of `file_size` bytes whose first 8 bytes are `head`; `read(n)` reads the n
    bytes that follow. Nothing larger than the header is read or allocated."""
    if file_size < 8 or len(head) < 8:
        raise _bad(f"not a safetensors file: {file_size} bytes is too short for the header length",
                          code="model.truncated")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES:
        raise _bad(f"the safetensors header claims {n} bytes, above the format's cap of {MAX_HEADER_BYTES}")
    if 8 + n > file_size:
        raise _bad(f"the safetensors header claims {n} bytes but the file holds only {file_size - 8} after "
                          "the length: the file is truncated or the header lies", code="model.truncated")
    raw = read(n)
    if len(raw) != n:
        raise _bad("the file ended inside the safetensors header", code="model.truncated")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("the safetensors header is not UTF-8 text") from exc
    if not text.startswith("{"):
        raise _bad("the safetensors header must be a JSON object")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise _bad(f"the safetensors header is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise _bad("the safetensors header must be a JSON object")
    metadata = _metadata(doc.pop(METADATA_KEY, None))
    entries = sorted((_entry(name, value) for name, value in doc.items()), key=lambda e: (e.begin, e.end, e.name))
    data_size = file_size - 8 - n
    position = 0
    for e in entries:
        if e.begin != position:
            what = "overlaps the previous tensor" if e.begin < position else "leaves a hole before it"
            raise _bad(f"tensor {e.name!r}: its data_offsets [{e.begin}, {e.end}] {what} (expected to start "
                              f"at {position})")
        if e.end > data_size:
            raise _bad(f"tensor {e.name!r}: its data_offsets end at {e.end} but the file holds {data_size} "
                              "bytes of data: the file is truncated or the header lies", code="model.truncated")
        position = e.end
    if position != data_size:
        raise _bad(f"the tensors cover {position} bytes of data but the file holds {data_size}: bytes "
                          "after the last tensor")
    return Header(tuple(entries), metadata, 8 + n)


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"the safetensors {METADATA_KEY} must be an object of strings")
    return dict(value)


def _entry(name: str, value: Any) -> Entry:
    where = f"tensor {name[:200]!r}"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise _bad(f"{where}: expected exactly the keys dtype, shape and data_offsets")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        known = ", ".join(DTYPES)
        raise _bad(f"{where}: dtype {str(dtype)[:40]!r} is not one this service reads ({known})",
                          code="model.dtype_unknown")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_count(d) for d in shape):
        raise _bad(f"{where}: shape must be a list of at most {MAX_DIMS} non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise _bad(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end")
    expected = math.prod(shape) * DTYPES[dtype].itemsize  # Python ints: no overflow
    if offsets[1] - offsets[0] != expected:
        raise _bad(f"{where}: {dtype} x {shape} is {expected} bytes but its data_offsets span "
                          f"{offsets[1] - offsets[0]}")
    return Entry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def dtype_name(dtype: np.dtype[Any]) -> str:
    """The format's name of a numpy dtype (native or little-endian only)."""
    for name, known in DTYPES.items():
        if known == dtype:
            return name
    raise ValueError(f"no safetensors dtype for {dtype}")


def encode_header(layout: Sequence[tuple[str, str, tuple[int, ...]]], metadata: Mapping[str, str]) -> bytes:
    """The 8-byte length and the JSON header of tensors (name, dtype, shape) stored back to back in this order,
    padded with spaces so that the data starts at a multiple of 8."""
    doc: dict[str, Any] = {}
    if metadata:
        doc[METADATA_KEY] = dict(metadata)
    offset = 0
    for name, dtype, shape in layout:
        if name in doc:
            raise ValueError(f"tensor name {name!r} appears twice")
        size = math.prod(shape) * DTYPES[dtype].itemsize
        doc[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % ALIGNMENT)
    if len(text) > MAX_HEADER_BYTES:
        raise _bad(f"the output header would be {len(text)} bytes, above the format's cap")
    return struct.pack("<Q", len(text)) + text
