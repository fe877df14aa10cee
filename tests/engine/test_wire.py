"""Bit patterns of the wire formats: float8, bfloat16 and packed int4 against ml_dtypes and the ONNX packing rule
written out here; engine.raw_decode of those types."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from engine import LimitError, NpyFormatError, QuantizationType, pack_int4, raw_decode, wire_codes
from engine.npy import DECODED_RAW_DTYPES

BIG = 10**6
FP8 = {"float8_e4m3fn": (ml_dtypes.float8_e4m3fn, QuantizationType.FP8_E4M3),
       "float8_e5m2": (ml_dtypes.float8_e5m2, QuantizationType.FP8_E5M2)}


@pytest.mark.parametrize("name", list(FP8))
def test_fp8_every_bit_pattern_decodes_as_ml_dtypes(name: str) -> None:
    bits = np.arange(256, dtype=np.uint8)
    expected = bits.view(FP8[name][0]).astype(np.float32)
    out = raw_decode(bits.tobytes(), shape="256", dtype=name, max_elements=BIG)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", list(FP8))
def test_fp8_every_finite_value_encodes_to_its_bits(name: str) -> None:
    dtype, qtype = FP8[name]
    bits = np.arange(256, dtype=np.uint8)
    values = bits.view(dtype).astype(np.float32)
    finite = np.isfinite(values)
    encoded = wire_codes(values[finite], qtype)
    assert encoded is not None
    codes, wire_name = encoded
    assert wire_name == name
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, bits[finite])  # -0.0 keeps its sign bit


def test_fp8_nan_is_ml_dtypes_nan() -> None:
    for name, (dtype, qtype) in FP8.items():
        encoded = wire_codes(np.float32([np.nan]), qtype)
        assert encoded is not None
        assert encoded[0][0] == np.float32(np.nan).astype(dtype).view(np.uint8), name


def test_bfloat16_bits_both_ways() -> None:
    values = np.float32([0.0, -0.0, 1.0, -2.5, 3.140625, 1e38, -1e-40]).astype(ml_dtypes.bfloat16)
    bits = values.view(np.uint16)
    encoded = wire_codes(values.astype(np.float32), QuantizationType.BFLOAT16)
    assert encoded is not None
    assert encoded[1] == "bfloat16"
    assert encoded[0].dtype == np.uint16
    np.testing.assert_array_equal(encoded[0], bits)
    out = raw_decode(bits.astype("<u2").tobytes(), shape="7", dtype="bfloat16", max_elements=BIG)
    np.testing.assert_array_equal(out.view(np.uint32), values.astype(np.float32).view(np.uint32))


def _onnx_pack(codes: list[int]) -> bytes:
    nibbles = [c & 0xF for c in codes] + [0] * (len(codes) % 2)
    return bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))


@pytest.mark.parametrize("codes", [[-8, 7, 0, -1, 3], [1, 2], [-8]])
def test_int4_packing_low_nibble_first(codes: list[int]) -> None:
    assert pack_int4(np.asarray(codes, np.int8)) == _onnx_pack(codes)
    out = raw_decode(_onnx_pack(codes), shape=str(len(codes)), dtype="int4", max_elements=BIG)
    assert out.dtype == np.int8
    assert out.tolist() == codes


def test_uint4_unpacks_to_uint8() -> None:
    codes = [15, 0, 9, 1, 2, 3]
    out = raw_decode(_onnx_pack(codes), shape="2,3", dtype="uint4", max_elements=BIG)
    assert out.dtype == np.uint8
    assert out.shape == (2, 3)
    assert out.reshape(-1).tolist() == codes


@pytest.mark.parametrize(("name", "count", "size"), [("bfloat16", 3, 5), ("float8_e4m3fn", 3, 4),
                                                     ("float8_e5m2", 3, 2), ("int4", 3, 1), ("int4", 3, 3),
                                                     ("uint4", 4, 3)])
def test_decoded_types_need_the_exact_size(name: str, count: int, size: int) -> None:
    with pytest.raises(NpyFormatError, match="size mismatch"):
        raw_decode(b"\0" * size, shape=str(count), dtype=name, max_elements=BIG)


@pytest.mark.parametrize("name", list(DECODED_RAW_DTYPES))
def test_decoded_types_check_the_element_limit_first(name: str) -> None:
    with pytest.raises(LimitError):
        raw_decode(b"", shape="100000,100000", dtype=name, max_elements=BIG)


def test_wire_codes_none_for_numpy_types() -> None:
    assert wire_codes(np.zeros(2, np.int8), QuantizationType.INT8) is None
    assert wire_codes(np.zeros(2, np.float16), QuantizationType.FLOAT16) is None
