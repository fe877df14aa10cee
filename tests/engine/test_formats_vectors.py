"""The engine against tests/data/formats_vectors.json (ONNX Runtime, onnx, PyTorch and ml_dtypes; see
tests/data/README.md): every expected number comes from that file, never from the engine."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine import QParamsRule, QuantizationConfig, Quantizer, scale_zero_point

VECTORS_PATH = Path(__file__).parents[1] / "data" / "formats_vectors.json"
VECTORS_SHA256 = "a155578f2aeb99d208a11ae97c7d9db635fc8c94c8d0a0a9ae86b3df6d078f07"
VECTORS = json.loads(VECTORS_PATH.read_text())
F32_MAX = float(np.finfo(np.float32).max)
TINY = float(np.finfo(np.float32).tiny)


def test_vectors_file_is_intact() -> None:
    assert hashlib.sha256(VECTORS_PATH.read_bytes()).hexdigest() == VECTORS_SHA256


# ---------------------------------------------------------------------- decoding (meta.float_encoding)
def _scalar(v: Any) -> float:
    if isinstance(v, str):
        if v.startswith("nan:"):
            return float(np.uint32(int(v[4:], 16)).view(np.float32))
        return float(np.float32(v))
    return float(np.float32(v))


_B64 = {"b64f32": np.float32, "b64u8": np.uint8, "b64i8": np.int8, "b64u16": np.uint16}


def f32s(v: Any) -> npt.NDArray[np.float32]:
    """A float32 array from its encoding (nan:0x... keeps its bits)."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["value"]), dtype="<f4").astype(np.float32)
    if not isinstance(v, list):
        return np.asarray([_scalar(v)], dtype=np.float32)
    out = np.empty(len(v), dtype=np.float32)
    for i, item in enumerate(v):
        if isinstance(item, str) and item.startswith("nan:"):
            out.view(np.uint32)[i] = int(item[4:], 16)
        else:
            out[i] = _scalar(item)
    return out


def ints(v: Any) -> npt.NDArray[np.int64]:
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["value"]), dtype=np.dtype(_B64[v["encoding"]]).newbyteorder("<")
                             ).astype(np.int64)
    return np.asarray(v, dtype=np.int64).reshape(-1)


def case_x(case: dict[str, Any]) -> npt.NDArray[np.float32]:
    return f32s(case["x"]).reshape(case["shape"])


def same_bits(a: npt.ArrayLike, b: npt.ArrayLike) -> bool:
    a32, b32 = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    return a32.shape == b32.shape and bool(np.array_equal(a32.view(np.uint32), b32.view(np.uint32)))


# ---------------------------------------------------------------------- qparams conventions
ANCHOR_RULE = {"onnx_dynamic": QParamsRule.onnx, "ort_tooling": QParamsRule.ort_tooling,
               "torch_observer": QParamsRule.torch}
QP_RECORDS = [(c, r) for c in VECTORS["qparams_conventions"]["cases"] for r in c["records"]]


def record_range(case: dict[str, Any], record: dict[str, Any]) -> tuple[Any, Any]:
    """The float32 range the anchor saw: the whole x per tensor, each row per channel."""
    x = case_x(case)
    if record["granularity"] == "per_channel":
        rows = x.reshape(x.shape[0], -1)
        return rows.min(axis=1), rows.max(axis=1)
    return x.min(), x.max()


def not_normal(record: dict[str, Any]) -> bool:
    """The anchor's scale is not a finite normal float32: the engine's one documented fallback applies."""
    s = f32s(record["scale"])
    return bool(np.any(~np.isfinite(s) | (np.abs(s) < TINY)))


def engine_params(case: dict[str, Any], record: dict[str, Any]) -> tuple[Any, Any]:
    """The record's parameters through a dynamic Quantizer of the record's type, symmetry, granularity and rule."""
    rule = ANCHOR_RULE[record["anchor"]]
    config = QuantizationConfig.from_dict({
        "quantization_type": record["dtype"].upper(), "symmetric": record["symmetric"],
        "per_channel": record["granularity"] == "per_channel", "qparams_rule": rule.name})
    params = Quantizer(config).compute_params(case_x(case).reshape(case_x(case).shape[0], -1)
                                              if record["granularity"] == "per_channel" else case_x(case))
    return params.scale, params.zero_point


EXACT = [(c, r) for c, r in QP_RECORDS if not not_normal(r)]
DEVIATING = [(c, r) for c, r in QP_RECORDS if not_normal(r)]


@pytest.mark.parametrize(("case", "record"), EXACT, ids=[r["id"] for _, r in EXACT])
def test_qparams_rule_equals_its_anchor(case: dict[str, Any], record: dict[str, Any]) -> None:
    """Scale (to the bit) and zero point equal the anchor's on every record with a finite normal scale; the
    ort_tooling records with the narrowed symmetric range (-127..127) are reproduced by the Quantizer itself, the
    others (the full range given to compute_scale_zp) by scale_zero_point with the record's qmin / qmax."""
    rule = ANCHOR_RULE[record["anchor"]]
    expected_scale, expected_zp = f32s(record["scale"]), ints(record["zero_point"])
    full = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}[record["dtype"]]
    engine_range = (full[0] + 1, full[1]) if record["symmetric"] and full[0] < 0 and rule is not QParamsRule.torch \
        else full
    if (record["qmin"], record["qmax"]) == engine_range:
        scale, zp = engine_params(case, record)
    else:
        lo, hi = record_range(case, record)
        scale, zp = scale_zero_point(lo, hi, record["qmin"], record["qmax"], record["symmetric"], rule)
    assert same_bits(scale, expected_scale), (scale, expected_scale)
    np.testing.assert_array_equal(np.asarray(zp).reshape(-1), expected_zp)


ONNX_CODES = [(c, r) for c, r in EXACT if r["anchor"] == "onnx_dynamic"]


@pytest.mark.parametrize(("case", "record"), ONNX_CODES, ids=[r["id"] for _, r in ONNX_CODES])
def test_onnx_rule_codes_equal_dynamic_quantize_linear(case: dict[str, Any], record: dict[str, Any]) -> None:
    """A default (onnx) DYNAMIC UINT8 quantizer gives DynamicQuantizeLinear's codes."""
    quantizer = Quantizer(QuantizationConfig.from_dict({"quantization_type": "UINT8"}))
    x = case_x(case)
    result = quantizer.quantize(x)
    np.testing.assert_array_equal(result.data.astype(np.int64).reshape(-1), ints(record["codes"]))


def test_deviations_are_only_non_normal_scales() -> None:
    """The records not reproduced are exactly those whose anchor scale overflows to inf or is subnormal / zero;
    for each the engine gives ort_tooling's float64 parameters (docs/numerics.md, 'One fallback')."""
    assert DEVIATING, "the vectors hold overflowing and subnormal ranges"
    for case, record in DEVIATING:
        rule = ANCHOR_RULE[record["anchor"]]
        assert rule is not QParamsRule.ort_tooling
        lo, hi = record_range(case, record)
        lo64 = np.minimum(np.asarray(lo, np.float64), 0.0)
        hi64 = np.maximum(np.asarray(hi, np.float64), 0.0)
        qmin, qmax = record["qmin"], record["qmax"]
        if record["symmetric"]:
            amax = np.maximum(-lo64, hi64)
            lo64, hi64 = -amax, amax
            if qmin < 0 and rule is QParamsRule.onnx:
                qmin = -qmax
        scale64 = (hi64 - lo64) / (qmax - qmin)
        expected = np.where(scale64 < TINY, 1.0, scale64).astype(np.float32)
        scale, _ = scale_zero_point(lo, hi, qmin, qmax, record["symmetric"], rule)
        assert same_bits(scale, expected), record["id"]
        assert np.all(np.isfinite(scale))
        assert np.all(scale >= TINY)


def test_record_counts() -> None:
    """Every qparams record is either reproduced exactly or a documented deviation."""
    assert len(EXACT) + len(DEVIATING) == VECTORS["meta"]["counts"]["qparams_records"]


# ---------------------------------------------------------------------- int4 / uint4
INT4_RECORDS = [(c, r) for c in VECTORS["int4"]["cases"] for r in c["records"]]
LENIENT = {"error_on_nan": False, "error_on_inf": False}


def _int4_import(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, parameters) of a STATIC instance holding the record's parameters."""
    config: dict[str, Any] = {"quantization_type": record["dtype"].upper(), "quantization_mode": "STATIC", **LENIENT}
    scale, zp = record["scale"], record["zero_point"]
    if record["granularity"] == "per_tensor":
        return config, {"global_scale": scale, "global_zero_point": zp}
    if record["granularity"] == "per_axis":
        config["per_channel"] = True
        return config, {"per_channel_scales": scale, "per_channel_zero_points": zp, "channel_dim": record["axis"]}
    config["group_size"] = record["block_size"]
    return config, {"block_scales": scale, "block_zero_points": zp, "block_size": record["block_size"],
                    "block_axis": record["axis"]}


@pytest.mark.parametrize(("case", "record"), INT4_RECORDS, ids=[r["id"] for _, r in INT4_RECORDS])
def test_int4_codes_and_dq_equal_onnx_runtime(case: dict[str, Any], record: dict[str, Any]) -> None:
    """With the record's parameters: the codes and the dequantized values equal ORT's QuantizeLinear /
    DequantizeLinear (per tensor, per axis, blocked with a partial last block)."""
    config, parameters = _int4_import(record)
    quantizer = Quantizer(QuantizationConfig.from_dict(config), parameters=parameters)
    x = case_x(case)
    axis = record["axis"]
    result = quantizer.quantize(x, channel_dim=axis)
    np.testing.assert_array_equal(result.data.astype(np.int64).reshape(-1), ints(record["codes"]))
    assert same_bits(quantizer.dequantize(result.data, channel_dim=axis).data, f32s(record["dq"]))
    assert same_bits(quantizer.quantize_dequantize(x, channel_dim=axis).data, f32s(record["dq"]))


TOOL_RECORDS = [(c, r) for c, r in INT4_RECORDS if r["qparams_source"].startswith("ort_compute")]


@pytest.mark.parametrize(("case", "record"), TOOL_RECORDS, ids=[r["id"] for _, r in TOOL_RECORDS])
def test_int4_parameters_equal_ort_tooling(case: dict[str, Any], record: dict[str, Any]) -> None:
    """A dynamic ort_tooling instance (INT4 symmetric, UINT4 affine) computes the tooling's parameters: per tensor,
    per slice and per block (compute_scale_zp_blocked)."""
    config: dict[str, Any] = {"quantization_type": record["dtype"].upper(), "qparams_rule": "ort_tooling",
                              "symmetric": record["dtype"] == "int4"}
    if record["granularity"] == "per_axis":
        config["per_channel"] = True
    if record["granularity"] == "blocked":
        config["group_size"] = record["block_size"]
    quantizer = Quantizer(QuantizationConfig.from_dict(config))
    params = quantizer.compute_params(case_x(case), channel_dim=record["axis"])
    assert same_bits(params.scale, f32s(np.asarray(record["scale"]).reshape(-1).tolist()))
    np.testing.assert_array_equal(params.zero_point.reshape(-1), ints(np.asarray(record["zero_point"]).reshape(-1)
                                                                      .tolist()))
    result = quantizer.quantize(case_x(case), channel_dim=record["axis"])
    np.testing.assert_array_equal(result.data.astype(np.int64).reshape(-1), ints(record["codes"]))


# ---------------------------------------------------------------------- bfloat16
BF16_CASES = VECTORS["bfloat16"]["cases"]


@pytest.mark.parametrize("case", BF16_CASES, ids=[c["id"] for c in BF16_CASES])
def test_bfloat16_equals_ml_dtypes_and_ort_cast(case: dict[str, Any]) -> None:
    """The BFLOAT16 quantize answer, read as bits >> 16, is ml_dtypes' and ORT Cast's bfloat16 (NaN: 0x7FC0 | sign);
    dequantize gives it back unchanged (bf16 -> float32 is exact)."""
    quantizer = Quantizer(QuantizationConfig.from_dict({"quantization_type": "BFLOAT16", **LENIENT}))
    result = quantizer.quantize(case_x(case))
    bits = (np.asarray(result.data, np.float32).view(np.uint32) >> 16).astype(np.int64).reshape(-1)
    np.testing.assert_array_equal(bits, ints(case["ml_dtypes_bits"]))
    np.testing.assert_array_equal(bits, ints(case["ort_bits"]))
    assert same_bits(result.data, f32s(case["dq"]))


# ---------------------------------------------------------------------- float8
def fp8_decode(codes: npt.NDArray[np.int64], dtype: str) -> npt.NDArray[np.float32]:
    """float8 bit patterns -> float32, from the formats' definitions (E4M3FN: bias 7, no infinities, S.1111.111
    NaN; E5M2: bias 15, IEEE-like)."""
    mbits, bias = (3, 7) if dtype == "float8_e4m3fn" else (2, 15)
    c = np.asarray(codes, np.int64)
    sign = np.where(c & 0x80, -1.0, 1.0)
    exp = (c >> mbits) & ((1 << (7 - mbits)) - 1)
    man = c & ((1 << mbits) - 1)
    value = np.where(exp == 0, man / 2.0**mbits * 2.0 ** (1 - bias),
                     (1 + man / 2.0**mbits) * 2.0 ** (exp.astype(np.float64) - bias))
    if dtype == "float8_e4m3fn":
        value = np.where((exp == 15) & (man == 7), np.nan, value)
    else:
        value = np.where(exp == 31, np.where(man == 0, np.inf, np.nan), value)
    return (sign * value).astype(np.float32)


FP8_TYPE = {"float8_e4m3fn": "FP8_E4M3", "float8_e5m2": "FP8_E5M2"}
FP8_RECORDS = [(c, r) for c in VECTORS["float8"]["cases"] for r in c["records"] if r["saturate"] == 1]


def same_or_nan(a: npt.ArrayLike, b: npt.ArrayLike) -> bool:
    """Equal bits, except that any NaN equals any NaN (the float8 NaN's bit pattern may differ)."""
    a32, b32 = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    nan = np.isnan(a32)
    return bool(np.array_equal(nan, np.isnan(b32)) and np.array_equal(a32[~nan].view(np.uint32),
                                                                        b32[~nan].view(np.uint32)))


@pytest.mark.parametrize(("case", "record"), FP8_RECORDS, ids=[r["id"] for _, r in FP8_RECORDS])
def test_float8_equals_ort_quantize_linear(case: dict[str, Any], record: dict[str, Any]) -> None:
    """saturate=1 records: with the record's scale, the quantize answer (the float8 values, decoded) equals ORT's
    codes decoded, quantize_dequantize equals its DequantizeLinear; NaN inputs give NaN."""
    config: dict[str, Any] = {"quantization_type": FP8_TYPE[record["dtype"]], "quantization_mode": "STATIC",
                              **LENIENT}
    scale = record["scale"]
    if record["granularity"] == "per_tensor":
        parameters: dict[str, Any] = {"global_scale": _scalar(scale), "global_zero_point": 0}
    else:
        config["per_channel"] = True
        scales = f32s(scale).tolist()
        parameters = {"per_channel_scales": scales, "per_channel_zero_points": [0] * len(scales),
                      "channel_dim": record["axis"]}
    quantizer = Quantizer(QuantizationConfig.from_dict(config), parameters=parameters)
    x = case_x(case)
    result = quantizer.quantize(x, channel_dim=record["axis"])
    assert same_or_nan(result.data, fp8_decode(ints(record["codes"]), record["dtype"]))
    assert same_or_nan(quantizer.quantize_dequantize(x, channel_dim=record["axis"]).data, f32s(record["dq"]))


AMAX_RECORDS = [(c, r) for c, r in FP8_RECORDS if c["scale_mode"] == "amax" and r["granularity"] == "per_tensor"]


@pytest.mark.parametrize(("case", "record"), AMAX_RECORDS, ids=[r["id"] for _, r in AMAX_RECORDS])
def test_float8_dynamic_scale_is_amax_over_max(case: dict[str, Any], record: dict[str, Any]) -> None:
    """A dynamic FP8 instance's scale is float32(amax over finite values) / float32(448 or 57344): the record's."""
    quantizer = Quantizer(QuantizationConfig.from_dict({"quantization_type": FP8_TYPE[record["dtype"]], **LENIENT}))
    result = quantizer.quantize(case_x(case))
    assert result.params is not None
    assert same_bits(result.params.scale, f32s(record["scale"]))
    assert same_or_nan(result.data, fp8_decode(ints(record["codes"]), record["dtype"]))
