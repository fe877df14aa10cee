"""Arrays on the wire: numpy arrays to request bodies, answers to numpy arrays.

Bodies are `.npy` files, except the types numpy has no dtype for (ml_dtypes' bfloat16 and float8), which go as raw
bytes with `X-Shape` / `X-Dtype`. Quantize answers come as `.npz` (codes and parameters in one file); a type numpy
lacks comes as the integers that carry it (uint16 / uint8 bit patterns, int8 / uint8 codes for int4 / uint4) with
`X-Dtype` naming it, and is given back as that ml_dtypes type when ml_dtypes is installed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET = "application/octet-stream"
# Decoded from their bit patterns (a view, no copy) when ml_dtypes is there.
BIT_PATTERN_TYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2")
# Sent as int8 / uint8 codes, one per byte (the server's .npy convention for INT4 / UINT4).
FOUR_BIT_TYPES = {"int4": np.int8, "uint4": np.uint8}

# The report's figures in the headers of a binary answer, and their keys in the JSON report.
REPORT_HEADERS = {"x-report-sqnr-db": "sqnr_db", "x-report-max-abs-error": "max_abs_error",
                  "x-report-rms-error": "rms_error", "x-report-clipped": "clipped"}


@dataclass(frozen=True)
class QuantizedArray:
    """A quantize answer: the codes (or float8 / bfloat16 / float16 values), the parameters they were made with
    (`scale` and `zero_point` per tensor as numbers, per channel or per block as arrays; None where the type uses
    none), the channel or block `axis`, `block_size` for block parameters, the type applied, and the error report
    when one was asked for."""

    codes: npt.NDArray[Any]
    scale: float | npt.NDArray[np.float32] | None
    zero_point: int | npt.NDArray[Any] | None
    axis: int | None
    quantization_type: str
    block_size: int | None = None
    report: dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


def encode(array: npt.ArrayLike) -> tuple[bytes, dict[str, str]]:
    """A request body for `array` and its headers."""
    arr = np.asarray(array)
    name = arr.dtype.name
    if name in BIT_PATTERN_TYPES:
        shape = ",".join(str(n) for n in arr.shape)
        return np.ascontiguousarray(arr).tobytes(), {"Content-Type": OCTET, "X-Shape": shape, "X-Dtype": name}
    if name in FOUR_BIT_TYPES:
        arr = arr.astype(FOUR_BIT_TYPES[name])
    return npy_bytes(arr), {"Content-Type": NPY}


def npy_bytes(array: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(body: bytes) -> npt.NDArray[Any]:
    return np.load(io.BytesIO(body), allow_pickle=False)  # type: ignore[no-any-return]


def decode_npz(body: bytes) -> dict[str, npt.NDArray[Any]]:
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def logical(array: npt.NDArray[Any], wire_dtype: str | None) -> npt.NDArray[Any]:
    """The bit patterns of a bfloat16 / float8 answer as that type, when ml_dtypes is installed."""
    if wire_dtype in BIT_PATTERN_TYPES:
        try:
            import ml_dtypes
        except ImportError:
            return array
        return array.view(getattr(ml_dtypes, wire_dtype))
    return array


def scalar_or_array(value: npt.NDArray[Any] | None, kind: type) -> Any:
    """A 0-d parameter as a Python number, anything else as the array it is."""
    if value is None:
        return None
    return kind(value) if value.ndim == 0 else value


def header_numbers(value: str | None, kind: type) -> Any:
    """X-Scale / X-Zero-Point: one number, or a comma-separated list as an array."""
    if not value:
        return None
    items = [kind(float(item)) if kind is int else kind(item) for item in value.split(",")]
    if len(items) == 1:
        return items[0]
    return np.asarray(items, dtype=np.float32 if kind is float else np.int64)


def report_from_headers(headers: Mapping[str, str]) -> dict[str, Any] | None:
    """The scalar figures a binary answer carries in X-Report-* headers (None when it has none)."""
    report: dict[str, Any] = {}
    for header, key in REPORT_HEADERS.items():
        raw = headers.get(header)
        if raw is None:
            continue
        if raw.strip().lower() in ("", "null", "none"):
            report[key] = None
        else:
            report[key] = int(raw) if key == "clipped" else float(raw)
    return report or None


def json_ready(array: npt.ArrayLike) -> list[Any]:
    """A 2-D array as nested lists of Python numbers (float32 values exactly, as doubles)."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf":
        arr = arr.astype(np.float32)
    return arr.tolist()  # type: ignore[no-any-return]
