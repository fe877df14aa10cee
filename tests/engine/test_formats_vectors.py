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
