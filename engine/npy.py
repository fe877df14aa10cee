"""Safe decoding and encoding of NumPy `.npy` bytes uploaded by untrusted clients.

Why this module exists instead of `np.load`:

* **Never unpickle.** A `.npy` file may declare an object dtype, whose payload is a pickle; unpickling attacker
  bytes is arbitrary code execution. Here the header is parsed with `ast.literal_eval` only (never `eval`, never
  pickle), and only plain numeric dtypes (float16/32/64, int8..64, uint8..64, little- or big-endian) pass a
  whitelist that is checked on the descr *string*, before numpy interprets it. Object, structured, subarray,
  datetime, complex, bool and string dtypes are refused.
* **Check before allocate.** Everything the header declares (version, header length, keys, dtype, number of
  dimensions, each dimension, element count against the caller's cap, and exact byte count against the bytes
  actually present) is validated with Python ints, so a 16-byte body claiming shape (100000, 100000) fails at
  once instead of allocating gigabytes, and `prod(shape)` cannot overflow.
* **Zero copy.** A valid payload is wrapped with `np.frombuffer` (read-only when the input is `bytes`); a
  Fortran-ordered file becomes a correctly shaped F-contiguous view. The byte order of the file is preserved.

`raw_decode` applies the same rules to an `application/octet-stream` body whose shape and dtype come from the
request instead of a header. Errors are `NpyFormatError` (malformed or unsupported) or `LimitError` (too large).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from . import formats
from .errors import LimitError, NpyFormatError

__all__ = ["ALLOWED_RAW_DTYPES", "DECODED_RAW_DTYPES", "MAX_HEADER_BYTES", "decode_npy", "encode_npy", "raw_decode"]

MAGIC: Final = b"\x93NUMPY"
MAX_HEADER_BYTES: Final = 10_000  # numpy's own default `max_header_size`; a numeric header needs ~128 bytes
MIN_DIMS: Final = 1
MAX_DIMS: Final = 4
_EXPECTED_KEYS: Final = frozenset({"descr", "fortran_order", "shape"})
# version -> (size of the little-endian header-length field, text encoding of the header)
_VERSIONS: Final[dict[tuple[int, int], tuple[int, str]]] = {
    (1, 0): (2, "ascii"),
    (2, 0): (4, "ascii"),
    (3, 0): (4, "utf-8"),
}
# Plain numeric descr strings only: byte order, kind f/i/u, item size. Anything else never reaches np.dtype().
_DESCR_RE: Final = re.compile(r"([<>|])([fiu])([1248])")
_ALLOWED_ITEMSIZES: Final[dict[str, frozenset[int]]] = {
    "f": frozenset({2, 4, 8}),
    "i": frozenset({1, 2, 4, 8}),
    "u": frozenset({1, 2, 4, 8}),
}
_ALLOWED_DESCRIPTION: Final = "float16/32/64, int8/16/32/64 or uint8/16/32/64 ('<' or '>' byte order, '|' for 1 byte)"

ALLOWED_RAW_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    name: np.dtype(code)
    for name, code in (
        ("float16", "<f2"),
        ("float32", "<f4"),
        ("float64", "<f8"),
        ("int8", "|i1"),
        ("int16", "<i2"),
        ("int32", "<i4"),
        ("int64", "<i8"),
        ("uint8", "|u1"),
        ("uint16", "<u2"),
        ("uint32", "<u4"),
        ("uint64", "<u8"),
    )
}
# Types numpy has no dtype for, sent as their bit patterns and decoded (a copy): bfloat16 (2 bytes a value) and
# float8 (1 byte) to their float32 values; int4 / uint4 (ONNX-packed, two codes a byte) to int8 / uint8 codes.
DECODED_RAW_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "bfloat16": np.dtype("<u2"),
    "float8_e4m3fn": np.dtype("|u1"),
    "float8_e5m2": np.dtype("|u1"),
    "int4": np.dtype("|u1"),
    "uint4": np.dtype("|u1"),
}
_MAX_SHAPE_TEXT: Final = 200  # characters; keeps int() parsing of a hostile shape string trivially cheap
_SHAPE_TEXT_RE: Final = re.compile(r"\s*(?:\[(.*)\]|\((.*)\)|(.*))\s*", re.DOTALL)
_DIM_RE: Final = re.compile(r"[0-9]+")


def decode_npy(data: bytes | memoryview, *, max_elements: int) -> npt.NDArray[Any]:
    """Validate `.npy` bytes completely, then return a zero-copy view of the payload.

    Raises NpyFormatError for anything malformed or unsupported and LimitError when the array has more than
    `max_elements` elements. Nothing larger than the header is allocated before all checks have passed.
    """
    _check_max_elements(max_elements)
    buf = _as_bytes_view(data)
    total = len(buf)

    if total < len(MAGIC) + 2:
        raise NpyFormatError(f"not a .npy file: {total} bytes is too short for the magic string and version")
    if bytes(buf[: len(MAGIC)]) != MAGIC:
        raise NpyFormatError(f"not a .npy file: bad magic string {bytes(buf[: len(MAGIC)])!r} (expected {MAGIC!r})")
    version = (buf[len(MAGIC)], buf[len(MAGIC) + 1])
    if version not in _VERSIONS:
        raise NpyFormatError(f"unsupported .npy format version {version[0]}.{version[1]} (supported: 1.0, 2.0, 3.0)")
    len_size, encoding = _VERSIONS[version]

    len_start = len(MAGIC) + 2
    header_start = len_start + len_size
    if total < header_start:
        raise NpyFormatError(
            f"truncated .npy header: {total} bytes, need {header_start} for the version {version[0]}.0 preamble"
        )
    header_len = int.from_bytes(buf[len_start:header_start], "little")
    if header_len > MAX_HEADER_BYTES:
        raise NpyFormatError(f".npy header length {header_len} exceeds the maximum of {MAX_HEADER_BYTES} bytes")
    data_start = header_start + header_len
    if data_start > total:
        raise NpyFormatError(
            f"truncated .npy header: header length field says {header_len} bytes but only "
            f"{total - header_start} bytes follow the preamble"
        )

    header = _parse_header(bytes(buf[header_start:data_start]), encoding)
    dtype = _npy_dtype(header["descr"])
    fortran_order = header["fortran_order"]
    if not isinstance(fortran_order, bool):
        raise NpyFormatError(f".npy header 'fortran_order' must be True or False; got {fortran_order!r}")
    shape = _npy_shape(header["shape"])

    count = _check_count(shape, max_elements)
    _check_byte_count(count, dtype, total - data_start)

    flat = np.frombuffer(buf, dtype=dtype, count=count, offset=data_start)
    return flat.reshape(shape, order="F" if fortran_order else "C")


def encode_npy(arr: npt.NDArray[Any]) -> bytes:
    """Serialize a numeric array as a version 1.0 `.npy` file (never pickled).

    Only the dtypes `decode_npy` accepts are written; anything else raises NpyFormatError. The shape is not
    restricted here (`decode_npy` additionally requires 1-4 positive dimensions). Fortran-contiguous arrays are
    written with fortran_order=True.
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"encode_npy needs a numpy.ndarray; got {type(arr).__name__}")
    if arr.dtype.fields is not None or arr.dtype.subdtype is not None or not _is_allowed_descr(arr.dtype.str):
        raise NpyFormatError(f"cannot encode dtype {arr.dtype} as .npy: only {_ALLOWED_DESCRIPTION} are supported")
    out = io.BytesIO()
    try:
        np.lib.format.write_array(out, arr, version=(1, 0), allow_pickle=False)
    except ValueError as exc:  # e.g. a header too large for version 1.0
        raise NpyFormatError(f"cannot encode array as .npy: {exc}") from exc
    return out.getvalue()


def encode_npz(members: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """Numeric arrays as an uncompressed `.npz` (a zip of `.npy` members, what numpy.savez writes), loadable with
    `numpy.load(..., allow_pickle=False)`."""
    out = io.BytesIO()
    for name, arr in members.items():
        if arr.dtype.kind not in "biuf":
            raise NpyFormatError(f"cannot encode member {name} of dtype {arr.dtype} in an .npz")
    np.savez(out, allow_pickle=False, **members)
    return out.getvalue()


def raw_decode(data: bytes | memoryview, *, shape: str, dtype: str, max_elements: int) -> npt.NDArray[Any]:
    """Zero-copy view of a raw little-endian C-order body whose `shape` and `dtype` come from the request.

    `shape` is text such as "2000,2000", "[2000, 2000]" or "(5,)" (1-4 positive dims); `dtype` is one of
    ALLOWED_RAW_DTYPES or DECODED_RAW_DTYPES. The body must hold exactly prod(shape) * itemsize bytes (int4 /
    uint4: ceil(prod(shape) / 2), the padding nibble of an odd count ignored). The DECODED_RAW_DTYPES are decoded
    (a new array, allocated after every check): bfloat16 and float8_* to float32 values, int4 / uint4 to int8 /
    uint8 codes.
    """
    _check_max_elements(max_elements)
    buf = _as_bytes_view(data)
    name = _raw_name(dtype)
    np_dtype = ALLOWED_RAW_DTYPES.get(name) or DECODED_RAW_DTYPES[name]
    dims = _parse_shape_text(shape)
    count = _check_count(dims, max_elements)
    if name in ("int4", "uint4"):
        expected = -(-count // 2)
        if expected != len(buf):
            raise NpyFormatError(
                f"payload size mismatch: {count} elements of {name} need {expected} bytes (two per byte), "
                f"but {len(buf)} bytes are present")
        packed = np.frombuffer(buf, dtype=np.uint8, count=expected)
        return formats.unpack_int4(packed, count, signed=name == "int4").reshape(dims)
    _check_byte_count(count, np_dtype, len(buf))
    flat = np.frombuffer(buf, dtype=np_dtype, count=count)
    if name == "bfloat16":
        return formats.bf16_decode(flat).reshape(dims)
    if name in formats.FP8_DTYPES:
        return formats.fp8_decode(flat, formats.FP8_DTYPES[name]).reshape(dims)
    return flat.reshape(dims)


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    """What a `.npy` header declares, validated: the payload follows at `data_offset` and is `nbytes` long."""

    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(read: Callable[[int], bytes], *, max_dims: int = 8) -> NpyHeader:
    """Validate the header of a `.npy` stream (a member of a checkpoint `.npz`), reading at most its preamble and
    MAX_HEADER_BYTES through `read(n)`: the same literal-only parsing and dtype whitelist as `decode_npy`, plus
    bool, 0-d and empty arrays (a checkpoint may hold them; they pass through a model job untouched)."""
    preamble = read(len(MAGIC) + 2)
    if len(preamble) < len(MAGIC) + 2 or preamble[: len(MAGIC)] != MAGIC:
        raise NpyFormatError("not a .npy file: bad magic string")
    version = (preamble[len(MAGIC)], preamble[len(MAGIC) + 1])
    if version not in _VERSIONS:
        raise NpyFormatError(f"unsupported .npy format version {version[0]}.{version[1]} (supported: 1.0, 2.0, 3.0)")
    len_size, encoding = _VERSIONS[version]
    length_field = read(len_size)
    if len(length_field) != len_size:
        raise NpyFormatError("truncated .npy header")
    header_len = int.from_bytes(length_field, "little")
    if header_len > MAX_HEADER_BYTES:
        raise NpyFormatError(f".npy header length {header_len} exceeds the maximum of {MAX_HEADER_BYTES} bytes")
    raw = read(header_len)
    if len(raw) != header_len:
        raise NpyFormatError("truncated .npy header")
    header = _parse_header(raw, encoding)
    descr = header["descr"]
    dtype = np.dtype(np.bool_) if descr == "|b1" else _npy_dtype(descr)
    fortran_order = header["fortran_order"]
    if not isinstance(fortran_order, bool):
        raise NpyFormatError(f".npy header 'fortran_order' must be True or False; got {fortran_order!r}")
    shape = header["shape"]
    if (not isinstance(shape, tuple) or len(shape) > max_dims
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise NpyFormatError(f".npy shape must be a tuple of at most {max_dims} non-negative integers; "
                             f"got {str(shape)[:100]}")
    return NpyHeader(dtype, shape, fortran_order, len(MAGIC) + 2 + len_size + header_len)


# --- helpers -------------------------------------------------------------------------------------------------


def _check_max_elements(max_elements: int) -> None:
    if isinstance(max_elements, bool) or not isinstance(max_elements, int) or max_elements < 1:
        raise ValueError(f"max_elements must be a positive int; got {max_elements!r}")


def _as_bytes_view(data: bytes | memoryview) -> memoryview:
    """A flat unsigned-byte view of `data` without copying (a non-contiguous memoryview raises TypeError)."""
    view = memoryview(data)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _parse_header(raw: bytes, encoding: str) -> dict[str, Any]:
    """Parse the header text as a Python literal dict with exactly the keys descr, fortran_order and shape."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise NpyFormatError(f".npy header is not valid {encoding.upper()} text") from exc
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise NpyFormatError(".npy header is not a valid Python literal dict") from exc
    node = tree.body
    if not isinstance(node, ast.Dict):
        raise NpyFormatError(f".npy header must be a dict literal; got {type(node).__name__.lower()} syntax")
    keys: list[str] = []
    for key in node.keys:
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise NpyFormatError(".npy header dict keys must be string literals")
        keys.append(key.value)
    if len(set(keys)) != len(keys):
        raise NpyFormatError(f".npy header has duplicate keys: {sorted(keys)}")
    missing = _EXPECTED_KEYS - set(keys)
    extra = set(keys) - _EXPECTED_KEYS
    if missing or extra:
        details = "; ".join(
            part
            for part in (
                f"missing {sorted(missing)}" if missing else "",
                f"unexpected {sorted(extra)}" if extra else "",
            )
            if part
        )
        raise NpyFormatError(f".npy header must have exactly the keys descr, fortran_order, shape ({details})")
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise NpyFormatError(".npy header contains something other than plain literals") from exc
    if not isinstance(value, dict):  # pragma: no cover - an ast.Dict always evaluates to a dict
        raise NpyFormatError(".npy header must be a dict literal")
    return value


def _npy_dtype(descr: object) -> np.dtype[Any]:
    """Whitelist the descr string before numpy interprets it; list descrs are structured dtypes."""
    if not isinstance(descr, str):
        kind = "structured dtype" if isinstance(descr, list) else type(descr).__name__
        raise NpyFormatError(
            f"unsupported .npy dtype descr ({kind}: {descr!r}); only {_ALLOWED_DESCRIPTION} are allowed"
        )
    match = _DESCR_RE.fullmatch(descr)
    if match is None:
        raise NpyFormatError(
            f"unsupported .npy dtype {descr!r}{_kind_hint(descr)}; only {_ALLOWED_DESCRIPTION} are allowed"
        )
    order, kind, size_text = match.groups()
    size = int(size_text)
    if size not in _ALLOWED_ITEMSIZES[kind]:
        raise NpyFormatError(f"unsupported .npy dtype {descr!r}; only {_ALLOWED_DESCRIPTION} are allowed")
    if size > 1 and order == "|":
        raise NpyFormatError(f"unsupported .npy dtype {descr!r}: a {size}-byte type needs '<' or '>' byte order")
    return np.dtype(descr)


def _is_allowed_descr(descr: str) -> bool:
    try:
        _npy_dtype(descr)
    except NpyFormatError:
        return False
    return True


def _kind_hint(descr: str) -> str:
    """A human-readable reason for the common refused kinds (from the descr text alone, no numpy parsing)."""
    body = descr.lstrip("<>|=")
    hints = {
        "O": "object (would need unpickling)",
        "b": "bool",
        "?": "bool",
        "c": "complex",
        "S": "bytes string",
        "a": "bytes string",
        "U": "unicode string",
        "V": "void/structured",
        "M": "datetime",
        "m": "timedelta",
    }
    if body[:1] in hints:
        return f" ({hints[body[:1]]})"
    if body.startswith("("):
        return " (subarray)"
    if "," in body:
        return " (structured)"
    return ""


def _npy_shape(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, tuple):
        raise NpyFormatError(f".npy header 'shape' must be a tuple of ints; got {shape!r}")
    return _check_dims(shape, f".npy shape {shape!r}")


def _check_dims(dims: tuple[object, ...], where: str) -> tuple[int, ...]:
    if not MIN_DIMS <= len(dims) <= MAX_DIMS:
        raise NpyFormatError(f"{where} has {len(dims)} dimensions; {MIN_DIMS} to {MAX_DIMS} are supported")
    out: list[int] = []
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise NpyFormatError(f"{where}: dimensions must be integers; got {dim!r}")
        if dim < 1:
            raise NpyFormatError(f"{where}: every dimension must be positive; got {dim}")
        out.append(dim)
    return tuple(out)


def _check_count(shape: tuple[int, ...], max_elements: int) -> int:
    count = math.prod(shape)  # Python ints: cannot overflow
    if count > max_elements:
        raise LimitError(f"array has {count} elements, more than the limit max_elements={max_elements}")
    return count


def _check_byte_count(count: int, dtype: np.dtype[Any], present: int) -> None:
    expected = count * dtype.itemsize
    if expected != present:
        relation = "fewer" if present < expected else "more"
        raise NpyFormatError(
            f"payload size mismatch: {count} elements of {dtype.name} need {expected} bytes, "
            f"but {present} bytes are present ({relation} than declared)"
        )


def _raw_name(name: str) -> str:
    allowed = ", ".join([*ALLOWED_RAW_DTYPES, *DECODED_RAW_DTYPES])
    if not isinstance(name, str):
        raise NpyFormatError(f"dtype must be a string, one of: {allowed}")
    key = name.strip().lower()
    if key not in ALLOWED_RAW_DTYPES and key not in DECODED_RAW_DTYPES:
        raise NpyFormatError(f"unsupported dtype {name[:40]!r}; allowed: {allowed} (little-endian)")
    return key


def _parse_shape_text(text: str) -> tuple[int, ...]:
    if not isinstance(text, str):
        raise NpyFormatError("shape must be a string such as '2000,2000' or '[2000, 2000]'")
    if len(text) > _MAX_SHAPE_TEXT:
        raise NpyFormatError(f"shape text is too long ({len(text)} characters, at most {_MAX_SHAPE_TEXT})")
    match = _SHAPE_TEXT_RE.fullmatch(text)
    assert match is not None  # the last alternative matches anything
    inner = next(group for group in match.groups() if group is not None)
    parts = [part.strip() for part in inner.split(",")]
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # tolerate a trailing comma, as in "(5,)"
    dims: list[int] = []
    for part in parts:
        if not _DIM_RE.fullmatch(part):
            raise NpyFormatError(
                f"invalid shape {text!r}: expected 1 to {MAX_DIMS} comma-separated positive integers, "
                f"e.g. '2000,2000' or '[2000, 2000]'"
            )
        dims.append(int(part))
    return _check_dims(tuple(dims), f"shape {text!r}")
