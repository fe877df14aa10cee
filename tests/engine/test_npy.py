"""engine.npy: safe .npy decode/encode and raw octet-stream decode (pure numpy, no database)."""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine.errors import LimitError, NpyFormatError
from engine.npy import ALLOWED_RAW_DTYPES, MAX_HEADER_BYTES, decode_npy, encode_npy, raw_decode

BIG = 10**12  # an element cap that never triggers
ALLOWED_DESCRS = [
    "<f2", ">f2", "<f4", ">f4", "<f8", ">f8",
    "|i1", "<i2", ">i2", "<i4", ">i4", "<i8", ">i8",
    "|u1", "<u2", ">u2", "<u4", ">u4", "<u8", ">u8",
]  # fmt: skip
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


def saved(arr: np.ndarray[Any, Any], **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kwargs)
    return buf.getvalue()


def forge(header: str | bytes, payload: bytes = b"", *, version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file with an arbitrary header text (the length field always tells the truth)."""
    raw = header.encode("latin1") if isinstance(header, str) else header
    length = struct.pack("<H", len(raw)) if version == (1, 0) else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes(version) + length + raw + payload


def header(descr: object = "'<f4'", fortran: object = "False", shape: object = "(2,)") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}\n"


def sample(descr: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    dtype = np.dtype(descr)
    size = int(np.prod(shape))
    if dtype.kind == "f":
        values = np.linspace(-3.5, 7.25, size)
    else:
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
        values = np.array([lo + (hi - lo) * i // max(size - 1, 1) for i in range(size)], dtype=dtype)
    return values.astype(dtype).reshape(shape)


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("descr", ALLOWED_DESCRS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_round_trip_of_np_save(descr: str, shape: tuple[int, ...]) -> None:
    arr = sample(descr, shape)
    out = decode_npy(saved(arr), max_elements=BIG)
    assert out.dtype == arr.dtype
    assert out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("descr", ["<f4", ">f8", "|u1", ">i2"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_fortran_order_round_trip(descr: str, shape: tuple[int, ...]) -> None:
    arr = np.asfortranarray(sample(descr, shape))
    data = saved(arr)
    assert b"'fortran_order': True" in data
    out = decode_npy(data, max_elements=BIG)
    assert out.shape == shape
    assert out.flags.f_contiguous
    np.testing.assert_array_equal(out, arr)


def test_big_endian_is_preserved() -> None:
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    out = decode_npy(saved(arr), max_elements=BIG)
    assert out.dtype == np.dtype(">i4")
    np.testing.assert_array_equal(out, [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_all_format_versions(version: tuple[int, int]) -> None:
    arr = sample("<f8", (3, 4))
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=False)
    np.testing.assert_array_equal(decode_npy(buf.getvalue(), max_elements=BIG), arr)


def test_decode_is_zero_copy_and_read_only_for_bytes() -> None:
    data = saved(np.arange(4, dtype="<i4"))
    out = decode_npy(data, max_elements=BIG)
    assert not out.flags.writeable
    backing = bytearray(data)
    view = decode_npy(memoryview(backing), max_elements=BIG)
    backing[-4:] = (99).to_bytes(4, "little")
    assert view[-1] == 99  # shares memory with the input buffer: no copy was made


def test_element_cap_is_inclusive() -> None:
    data = saved(np.zeros((2, 3), dtype="<f4"))
    assert decode_npy(data, max_elements=6).shape == (2, 3)


def test_encode_writes_version_1_that_numpy_reads_without_pickle() -> None:
    arr = np.asfortranarray(sample(">u2", (4, 5)))
    data = encode_npy(arr)
    assert data[:8] == b"\x93NUMPY\x01\x00"
    back = np.load(io.BytesIO(data), allow_pickle=False)
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(decode_npy(data, max_elements=BIG), arr)


def test_encode_handles_non_contiguous_arrays() -> None:
    arr = np.arange(60, dtype="<f4").reshape(6, 10)[::2, ::3]
    np.testing.assert_array_equal(decode_npy(encode_npy(arr), max_elements=BIG), arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.array([1, "a", None], dtype=object),
        np.array([True, False]),
        np.array([1 + 2j]),
        np.array(["ab"]),
        np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
        np.zeros(2, dtype="datetime64[s]"),
    ],
    ids=["object", "bool", "complex", "str", "structured", "datetime"],
)
def test_encode_refuses_non_numeric(arr: np.ndarray[Any, Any]) -> None:
    with pytest.raises(NpyFormatError, match="cannot encode dtype"):
        encode_npy(arr)


@st.composite
def allowed_arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    dtype = np.dtype(draw(st.sampled_from(ALLOWED_DESCRS)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6))
    arr = draw(hnp.arrays(dtype, shape))
    return np.asfortranarray(arr) if draw(st.booleans()) else arr


@settings(max_examples=200, deadline=None)
@given(allowed_arrays())
def test_property_decode_encode_round_trip(arr: np.ndarray[Any, Any]) -> None:
    for data in (encode_npy(arr), saved(arr)):
        out = decode_npy(data, max_elements=BIG)
        assert out.dtype == arr.dtype
        assert out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)  # NaNs compare equal here
        assert out.tobytes() == arr.tobytes()  # bit-exact, including NaN payloads and -0.0


# --- rejections: preamble and header ------------------------------------------------------------------------


def test_bad_magic() -> None:
    data = b"\x93NUMPX" + saved(np.zeros(2, dtype="<f4"))[6:]
    with pytest.raises(NpyFormatError, match="bad magic"):
        decode_npy(data, max_elements=BIG)


def test_not_npy_at_all() -> None:
    with pytest.raises(NpyFormatError, match="bad magic"):
        decode_npy(b"PK\x03\x04 this is a zip file", max_elements=BIG)


@pytest.mark.parametrize("data", [b"", b"\x93NUM", b"\x93NUMPY\x01"])
def test_too_short_for_magic_and_version(data: bytes) -> None:
    with pytest.raises(NpyFormatError, match="too short"):
        decode_npy(data, max_elements=BIG)


@pytest.mark.parametrize("version", [(0, 0), (1, 1), (4, 0), (255, 255)])
def test_unsupported_version(version: tuple[int, int]) -> None:
    data = forge(header(), b"\0" * 8)
    data = data[:6] + bytes(version) + data[8:]
    with pytest.raises(NpyFormatError, match=r"unsupported \.npy format version"):
        decode_npy(data, max_elements=BIG)


@pytest.mark.parametrize(("data", "needed"), [(b"\x93NUMPY\x01\x00\x10", 10), (b"\x93NUMPY\x02\x00\x10\x00", 12)])
def test_truncated_preamble(data: bytes, needed: int) -> None:
    with pytest.raises(NpyFormatError, match=f"truncated .npy header: {len(data)} bytes, need {needed}"):
        decode_npy(data, max_elements=BIG)


def test_truncated_header() -> None:
    data = saved(np.zeros(3, dtype="<f4"))
    with pytest.raises(NpyFormatError, match=r"truncated \.npy header"):
        decode_npy(data[:40], max_elements=BIG)


def test_header_length_beyond_data() -> None:
    data = bytearray(saved(np.zeros(3, dtype="<f4")))
    data[8:10] = struct.pack("<H", 5000)
    with pytest.raises(NpyFormatError, match="header length field says 5000 bytes"):
        decode_npy(bytes(data), max_elements=BIG)


def test_header_length_over_the_cap() -> None:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{}"
    with pytest.raises(NpyFormatError, match=f"exceeds the maximum of {MAX_HEADER_BYTES}"):
        decode_npy(data, max_elements=BIG)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("['descr', 'fortran_order', 'shape']\n", "must be a dict literal"),
        ("(1, 2)\n", "must be a dict literal"),
        ("__import__('os').system('true')\n", "must be a dict literal"),
        ("{'descr': '<f4', 'fortran_order': False, \n", "not a valid Python literal"),
        ("", "not a valid Python literal"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\n", r"unexpected \['extra'\]"),
        ("{'descr': '<f4', 'shape': (2,)}\n", r"missing \['fortran_order'\]"),
        ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", "duplicate keys"),
        ("{1: '<f4', 'fortran_order': False, 'shape': (2,)}\n", "keys must be string literals"),
        ("{**x, 'fortran_order': False, 'shape': (2,)}\n", "keys must be string literals"),
        (header(descr="__import__('os').getcwd()"), "other than plain literals"),
        (header(shape="(2, len('ab'))"), "other than plain literals"),
        (header(fortran="1"), "'fortran_order' must be True or False"),
        (header(shape="[2]"), "'shape' must be a tuple"),
        (header(shape="(2.0,)"), "dimensions must be integers"),
        (header(shape="(True,)"), "dimensions must be integers"),
    ],
)
def test_bad_header_contents(text: str, message: str) -> None:
    with pytest.raises(NpyFormatError, match=message):
        decode_npy(forge(text, b"\0" * 8), max_elements=BIG)


def test_non_ascii_header() -> None:
    with pytest.raises(NpyFormatError, match="not valid ASCII"):
        decode_npy(forge(header().encode() + b"\xff", b"\0" * 8), max_elements=BIG)


def test_null_byte_in_header() -> None:
    with pytest.raises(NpyFormatError, match="not a valid Python literal"):
        decode_npy(forge(header() + "\0", b"\0" * 8), max_elements=BIG)


def test_object_dtype_is_refused_without_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    data = saved(np.array([1, "two", {"three": 3}], dtype=object), allow_pickle=True)
    assert b"'descr': '|O'" in data

    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("pickle must never be called")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    with pytest.raises(NpyFormatError, match=r"unsupported \.npy dtype '\|O' \(object"):
        decode_npy(data, max_elements=BIG)


@pytest.mark.parametrize(
    ("arr", "hint"),
    [
        (np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), "structured dtype"),
        (np.zeros(2, dtype=[("a", "<f4", (3,))]), "structured dtype"),
        (np.array([True, False]), "bool"),
        (np.array([1 + 2j, 3j], dtype="<c8"), "complex"),
        (np.array([1 + 2j, 3j], dtype="<c16"), "complex"),
        (np.array(["ab", "c"]), "unicode string"),
        (np.array([b"ab", b"c"]), "bytes string"),
        (np.zeros(2, dtype="datetime64[s]"), "datetime"),
        (np.zeros(2, dtype="timedelta64[s]"), "timedelta"),
        (np.zeros(2, dtype="V4"), "void"),
        (np.zeros(2, dtype=np.longdouble), "allowed"),
    ],
    ids=[
        "structured",
        "structured-subarray",
        "bool",
        "complex64",
        "complex128",
        "str",
        "bytes",
        "datetime",
        "timedelta",
        "void",
        "longdouble",
    ],
)
def test_refused_dtypes_from_np_save(arr: np.ndarray[Any, Any], hint: str) -> None:
    with pytest.raises(NpyFormatError, match=hint):
        decode_npy(saved(arr), max_elements=BIG)


@pytest.mark.parametrize(
    "descr",
    [
        "'(2,)<f4'",
        "'<f4,<i4'",
        "'float32'",
        "'f4'",
        "'=f4'",
        "'|f4'",
        "'<f16'",
        "'<i3'",
        "'<u16'",
        "'<f1'",
        "4",
        "None",
        "('<f4', (2,))",
    ],
)
def test_refused_descr_strings(descr: str) -> None:
    with pytest.raises(NpyFormatError, match=r"unsupported \.npy dtype"):
        decode_npy(forge(header(descr=descr), b"\0" * 64), max_elements=BIG)


# --- rejections: shape, size ---------------------------------------------------------------------------------


def test_zero_dimensional_shape() -> None:
    with pytest.raises(NpyFormatError, match="has 0 dimensions; 1 to 4"):
        decode_npy(saved(np.float32(1.5)), max_elements=BIG)


def test_five_dimensional_shape() -> None:
    with pytest.raises(NpyFormatError, match="has 5 dimensions; 1 to 4"):
        decode_npy(saved(np.zeros((1, 2, 1, 2, 1), dtype="<f4")), max_elements=BIG)


def test_zero_dimension() -> None:
    with pytest.raises(NpyFormatError, match="every dimension must be positive; got 0"):
        decode_npy(saved(np.zeros((3, 0), dtype="<f4")), max_elements=BIG)


def test_negative_dimension() -> None:
    with pytest.raises(NpyFormatError, match="every dimension must be positive; got -2"):
        decode_npy(forge(header(shape="(-2, -2)"), b"\0" * 16), max_elements=BIG)


@pytest.mark.parametrize("shape", ["(100000, 100000)", f"({2**31},)", f"({2**62}, {2**62})"])
def test_huge_declared_shape_with_tiny_data_fails_fast(shape: str) -> None:
    data = forge(header(descr="'<f8'", shape=shape), b"\0" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(NpyFormatError, match=r"need \d+ bytes, but 16 bytes are present"):
            decode_npy(data, max_elements=2**200)  # the cap does not save us: the byte check must
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_huge_declared_shape_hits_the_element_cap_first() -> None:
    data = forge(header(shape="(100000, 100000)"), b"\0" * 16)
    with pytest.raises(LimitError, match="max_elements=1000000") as info:
        decode_npy(data, max_elements=1_000_000)
    assert "10000000000 elements" in str(info.value)


@pytest.mark.parametrize("delta", [-1, -4, 1, 4, 1000])
def test_declared_bytes_must_match_present_bytes(delta: int) -> None:
    data = saved(np.arange(6, dtype="<f4"))
    data = data[:delta] if delta < 0 else data + b"\0" * delta
    relation = "fewer" if delta < 0 else "more"
    with pytest.raises(NpyFormatError, match=f"need 24 bytes, but {24 + delta} bytes are present \\({relation}"):
        decode_npy(data, max_elements=BIG)


def test_header_only_without_payload() -> None:
    data = saved(np.arange(6, dtype="<f4"))
    with pytest.raises(NpyFormatError, match="need 24 bytes, but 0 bytes"):
        decode_npy(data[:-24], max_elements=BIG)


def test_element_cap_exceeded() -> None:
    data = saved(np.zeros((4, 5), dtype="<i2"))
    with pytest.raises(LimitError, match="20 elements, more than the limit max_elements=19"):
        decode_npy(data, max_elements=19)


@pytest.mark.parametrize("cap", [0, -1, True, 1.5])
def test_invalid_cap_is_a_programming_error(cap: Any) -> None:
    with pytest.raises(ValueError, match="max_elements must be a positive int"):
        decode_npy(saved(np.zeros(2, dtype="<f4")), max_elements=cap)


def test_np_load_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> object:
        raise AssertionError("np.load / read_array must not be used")

    monkeypatch.setattr(np, "load", forbidden)
    monkeypatch.setattr(np.lib.format, "read_array", forbidden)
    np.testing.assert_array_equal(decode_npy(saved(np.arange(3, dtype="<i8")), max_elements=BIG), [0, 1, 2])


# --- raw_decode ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape_text", ["2,3", "[2, 3]", " [2,3] ", "(2, 3)", "2 , 3"])
def test_raw_decode_shapes(shape_text: str) -> None:
    arr = np.arange(6, dtype="<f4").reshape(2, 3)
    out = raw_decode(arr.tobytes(), shape=shape_text, dtype="float32", max_elements=BIG)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, arr)
    assert not out.flags.writeable


@pytest.mark.parametrize("shape_text", ["5", "[5]", "(5,)", "5,"])
def test_raw_decode_one_dim(shape_text: str) -> None:
    out = raw_decode(np.arange(5, dtype="<i2").tobytes(), shape=shape_text, dtype="int16", max_elements=BIG)
    np.testing.assert_array_equal(out, np.arange(5))


@pytest.mark.parametrize("name", sorted(ALLOWED_RAW_DTYPES))
def test_raw_decode_every_dtype_little_endian(name: str) -> None:
    arr = sample(np.dtype(name).newbyteorder("<").str, (2, 1, 3, 2))
    out = raw_decode(arr.tobytes(), shape="2,1,3,2", dtype=name, max_elements=BIG)
    assert out.dtype == np.dtype(name).newbyteorder("<")
    np.testing.assert_array_equal(out, arr)


def test_raw_decode_is_zero_copy() -> None:
    backing = bytearray(np.arange(4, dtype="<u4").tobytes())
    out = raw_decode(memoryview(backing), shape="4", dtype="uint32", max_elements=BIG)
    backing[:4] = (7).to_bytes(4, "little")
    assert out[0] == 7


def test_raw_decode_dtype_is_case_and_space_tolerant() -> None:
    out = raw_decode(b"\x01\x02", shape="2", dtype=" UINT8 ", max_elements=BIG)
    np.testing.assert_array_equal(out, [1, 2])


@pytest.mark.parametrize("name", ["float128", "complex64", "bool", "object", "<f4", ">f4", "f4", "", "str", "V8"])
def test_raw_decode_refuses_unknown_dtypes(name: str) -> None:
    with pytest.raises(NpyFormatError, match=r"allowed: float16, float32, float64, int8, .*uint32"):
        raw_decode(b"\0" * 16, shape="2", dtype=name, max_elements=BIG)


@pytest.mark.parametrize(
    ("shape_text", "message"),
    [
        ("", "invalid shape"),
        ("[]", "invalid shape"),
        ("()", "invalid shape"),
        ("2,,3", "invalid shape"),
        ("2;3", "invalid shape"),
        ("-2,3", "invalid shape"),
        ("2.0,3", "invalid shape"),
        ("1e3", "invalid shape"),
        ("[2, 3", "invalid shape"),
        ("0x10", "invalid shape"),
        ("\u0662", "invalid shape"),  # ARABIC-INDIC DIGIT TWO: str.isdigit() would accept it
        ("2,0", "every dimension must be positive; got 0"),
        ("1,1,1,1,1", "has 5 dimensions; 1 to 4"),
        ("9" * 300, "shape text is too long"),
    ],
)
def test_raw_decode_refuses_bad_shapes(shape_text: str, message: str) -> None:
    with pytest.raises(NpyFormatError, match=message):
        raw_decode(b"\0" * 4, shape=shape_text, dtype="uint8", max_elements=BIG)


@pytest.mark.parametrize("nbytes", [0, 23, 25, 48])
def test_raw_decode_byte_count_must_match(nbytes: int) -> None:
    with pytest.raises(NpyFormatError, match=f"need 24 bytes, but {nbytes} bytes are present"):
        raw_decode(b"\0" * nbytes, shape="2,3", dtype="float32", max_elements=BIG)


def test_raw_decode_huge_shape_fails_fast() -> None:
    with pytest.raises(NpyFormatError, match="need 80000000000 bytes, but 16 bytes"):
        raw_decode(b"\0" * 16, shape="100000,100000", dtype="float64", max_elements=2**100)


def test_raw_decode_element_cap() -> None:
    with pytest.raises(LimitError, match="4000000 elements, more than the limit max_elements=1000000"):
        raw_decode(b"\0" * 16, shape="2000,2000", dtype="float32", max_elements=1_000_000)
