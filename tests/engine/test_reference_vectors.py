"""The engine against the reference vectors ONNX Runtime and PyTorch produced (tests/data/README.md).

Every expected number here comes from the reference file, never from the engine: integer codes equal, dequantized
values equal to the float32 bit, clipped counts equal, and (for `ort_compute_scale_zp` records) the computed scale
and zero point equal to ONNX Runtime's `compute_scale_zp`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine import QParams, QuantizationConfig, Quantizer, kernels
from engine.qparams import scale_zero_point

REFERENCE_PATH = Path(__file__).parents[1] / "data" / "reference_vectors.json"
REFERENCE_SHA256 = "df0a01960caa32c60c49d1521a71955f13428946afc6f99ec84749a298329e32"
REFERENCE = json.loads(REFERENCE_PATH.read_text())
CASES: list[dict[str, Any]] = REFERENCE["cases"]
STORAGE = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}


def _record_ids(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """The record ids; the few that repeat (explicit parameters on one case) get their scale and zero point."""
    counts = Counter(r["id"] for _, r in pairs)
    return [r["id"] if counts[r["id"]] == 1 else f"{r['id']}/scale={r['scale']}/zp={r['zero_point']}" for _, r in pairs]


RECORDS = [(case, record) for case in CASES for record in case["records"]]
RECORD_PARAMS = pytest.mark.parametrize(("case", "record"), RECORDS, ids=_record_ids(RECORDS))
ORT_RECORDS = [(c, r) for c, r in RECORDS if r["qparams_source"] == "ort_compute_scale_zp"]


# ---------------------------------------------------------------------- helpers
def data(case: dict[str, Any]) -> npt.NDArray[np.float32]:
    return np.asarray(case["x"], dtype=np.float32).reshape(case["shape"])


def expected_q(case: dict[str, Any], record: dict[str, Any]) -> npt.NDArray[np.int64]:
    return np.asarray(record["q"], dtype=np.int64).reshape(case["shape"])


def expected_dq(case: dict[str, Any], record: dict[str, Any]) -> npt.NDArray[np.float32]:
    return np.asarray(record["dq"], dtype=np.float32).reshape(case["shape"])


def assert_bits_equal(actual: npt.NDArray[Any], expected: npt.NDArray[np.float32]) -> None:
    """Equal to the float32 bit (so -0.0 != 0.0 and every last-place difference counts)."""
    actual = np.asarray(actual)
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape
    mismatch = np.flatnonzero(actual.view(np.int32) != expected.view(np.int32))
    assert mismatch.size == 0, f"{mismatch.size} values differ, first at {mismatch[:5]}: " \
        f"{actual.ravel()[mismatch[:5]]} != {expected.ravel()[mismatch[:5]]}"


def record_params(record: dict[str, Any]) -> QParams:
    return QParams.of(record["scale"], record["zero_point"], record["axis"])


def type_config(record: dict[str, Any], **fields: Any) -> QuantizationConfig:
    """A config of the record's dtype at its full width (reduce_range and symmetric records still saturate to the
    full type range)."""
    qtype = record["dtype"].upper()
    return QuantizationConfig.from_dict({"quantization_type": qtype, **fields})


def imported_parameters(record: dict[str, Any]) -> dict[str, Any]:
    if record["axis"] is None:
        return {"global_scale": record["scale"], "global_zero_point": record["zero_point"]}
    return {"per_channel_scales": record["scale"], "per_channel_zero_points": record["zero_point"],
            "channel_dim": record["axis"]}


def data_range(x: npt.NDArray[np.float32], axis: int | None) -> tuple[Any, Any]:
    if axis is None:
        return x.min(), x.max()
    others = tuple(i for i in range(x.ndim) if i != axis)
    return x.min(axis=others), x.max(axis=others)


def test_reference_file_is_the_vendored_one() -> None:
    """The repository's own copy, unchanged: its checksum and provenance are the ones tests/data/README.md states."""
    raw = REFERENCE_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == REFERENCE_SHA256
    assert REFERENCE_SHA256 in (REFERENCE_PATH.parent / "README.md").read_text()
    assert REFERENCE["meta"]["versions"]["onnxruntime"] == "1.32.0"
    assert REFERENCE["meta"]["versions"]["torch"].startswith("2.13")
    assert len(RECORDS) == 277
    assert len(ORT_RECORDS) > 100


# ---------------------------------------------------------------------- the kernels, with the record's parameters
@RECORD_PARAMS
def test_kernels_match_reference(case: dict[str, Any], record: dict[str, Any]) -> None:
    x = data(case)
    params = record_params(record)
    qmin, qmax = record["type_quant_min"], record["type_quant_max"]

    q = kernels.quantize(x, params, qmin, qmax, STORAGE[record["dtype"]])
    assert q.dtype == STORAGE[record["dtype"]]
    np.testing.assert_array_equal(q.astype(np.int64), expected_q(case, record))

    assert_bits_equal(kernels.dequantize(q, params), expected_dq(case, record))
    assert_bits_equal(kernels.dequantize(expected_q(case, record), params), expected_dq(case, record))
    assert_bits_equal(kernels.quantize(x, params, qmin, qmax, np.float32, dequantize_after=True),
                      expected_dq(case, record))
    _, clipped, _ = kernels.quantize_counted(x, params, qmin, qmax, STORAGE[record["dtype"]], count_clipped=True)
    assert clipped == record["n_clipped"]


# ---------------------------------------------------------------------- a Quantizer with imported parameters
@RECORD_PARAMS
def test_static_quantizer_matches_reference(case: dict[str, Any], record: dict[str, Any]) -> None:
    x = data(case)
    quantizer = Quantizer(type_config(record, quantization_mode="STATIC"))
    quantizer.import_parameters(imported_parameters(record))

    result = quantizer.quantize(x)
    assert result.data.dtype == STORAGE[record["dtype"]]
    np.testing.assert_array_equal(result.data.astype(np.int64), expected_q(case, record))
    assert result.delta.clipped_values == record["n_clipped"]

    assert_bits_equal(quantizer.dequantize(result.data).data, expected_dq(case, record))
    assert_bits_equal(quantizer.dequantize(expected_q(case, record)).data, expected_dq(case, record))

    fake = quantizer.quantize_dequantize(x)
    assert_bits_equal(fake.data, expected_dq(case, record))
    assert fake.delta.clipped_values == record["n_clipped"]
    assert quantizer.stats.clipped_values == 2 * record["n_clipped"]


# ---------------------------------------------------------------------- parameters computed by the engine
@pytest.mark.parametrize(("case", "record"), ORT_RECORDS, ids=_record_ids(ORT_RECORDS))
def test_scale_zero_point_matches_ort(case: dict[str, Any], record: dict[str, Any]) -> None:
    """qparams.scale_zero_point on the record's calibration range reproduces compute_scale_zp to the bit."""
    lo, hi = data_range(data(case), record["axis"])
    scale, zp = scale_zero_point(lo, hi, record["calib_quant_min"], record["calib_quant_max"],
                                 record["scheme"] == "symmetric")
    expected_scale = np.asarray(record["scale"], dtype=np.float32)
    assert_bits_equal(scale.reshape(expected_scale.shape), expected_scale)
    np.testing.assert_array_equal(zp, np.asarray(record["zero_point"], dtype=np.int64))


DYNAMIC_RECORDS = [(c, r) for c, r in ORT_RECORDS if not r["reduce_range"]]


@pytest.mark.parametrize(("case", "record"), DYNAMIC_RECORDS, ids=_record_ids(DYNAMIC_RECORDS))
def test_dynamic_quantizer_computes_ort_parameters(case: dict[str, Any], record: dict[str, Any]) -> None:
    """A DYNAMIC Quantizer (symmetric per the record's scheme; per channel along the record's axis) computes the
    record's scale and zero point and quantizes to its codes."""
    x = data(case)
    per_channel = record["axis"] is not None
    quantizer = Quantizer(type_config(record, symmetric=record["scheme"] == "symmetric", per_channel=per_channel,
                                      qparams_rule="ort_tooling"))
    expected_scale = np.asarray(record["scale"], dtype=np.float32)
    expected_zp = np.asarray(record["zero_point"], dtype=np.int64)

    params = quantizer.compute_params(x, channel_dim=record["axis"])
    assert params.axis == record["axis"]
    assert_bits_equal(params.scale, expected_scale)
    np.testing.assert_array_equal(params.zero_point, expected_zp)

    result = quantizer.quantize(x, channel_dim=record["axis"])
    np.testing.assert_array_equal(result.data.astype(np.int64), expected_q(case, record))
    assert result.params is not None
    assert_bits_equal(result.params.scale, expected_scale)
    np.testing.assert_array_equal(result.params.zero_point, expected_zp)
    assert result.delta.clipped_values == record["n_clipped"]
    assert_bits_equal(quantizer.dequantize(result.data, channel_dim=record["axis"]).data, expected_dq(case, record))
    assert_bits_equal(quantizer.quantize_dequantize(x, channel_dim=record["axis"]).data, expected_dq(case, record))

    if per_channel:
        # channel_idx gives the one slice's pair, the same as the per-channel list holds for it
        for idx in (0, x.shape[record["axis"]] - 1):
            one = quantizer.compute_params(x, channel_idx=idx, channel_dim=record["axis"])
            assert one.axis is None
            assert_bits_equal(one.scale.reshape(1), expected_scale[idx : idx + 1])
            assert int(one.zero_point) == expected_zp[idx]


SYMMETRIC_RECORDS = [(c, r) for c, r in DYNAMIC_RECORDS if r["scheme"] == "symmetric" and r["axis"] is None]


@pytest.mark.parametrize(("case", "record"), SYMMETRIC_RECORDS, ids=_record_ids(SYMMETRIC_RECORDS))
def test_symmetric_mode_equals_symmetric_flag(case: dict[str, Any], record: dict[str, Any]) -> None:
    """SYMMETRIC mode forces the symmetric parameters whatever `symmetric` says."""
    quantizer = Quantizer(type_config(record, quantization_mode="SYMMETRIC", symmetric=False))
    result = quantizer.quantize(data(case))
    np.testing.assert_array_equal(result.data.astype(np.int64), expected_q(case, record))
    assert result.params is not None
    assert float(result.params.scale) == np.float32(record["scale"])


# ---------------------------------------------------------------------- FLOAT16
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_float16_matches_reference_cast(case: dict[str, Any]) -> None:
    x = data(case)
    expected = np.asarray(case["casts"]["float16"], dtype=np.float32).reshape(case["shape"])
    quantizer = Quantizer(QuantizationConfig.from_dict({"quantization_type": "FLOAT16"}))

    assert_bits_equal(quantizer.quantize_dequantize(x).data, expected)
    half = quantizer.quantize(x).data
    assert half.dtype == np.float16
    assert_bits_equal(half.astype(np.float32), expected)


# ---------------------------------------------------------------------- non-finite inputs
NONFINITE = REFERENCE["nonfinite"]


@pytest.mark.parametrize(("key", "qtype", "zp"), [("int8_zp0", "INT8", 0), ("uint8_zp128", "UINT8", 128)])
def test_nonfinite_inputs(key: str, qtype: str, zp: int) -> None:
    """+-inf saturate as ONNX Runtime does; NaN maps to the zero point's code (ORT gives qmin there: the issue
    chose the zero point, the value that dequantizes to 0)."""
    x = np.asarray([float(v) for v in NONFINITE["x"]], dtype=np.float32)
    ort_q = NONFINITE["results"][key]["ort_q"]
    quantizer = Quantizer(QuantizationConfig.from_dict({
        "quantization_type": qtype, "quantization_mode": "STATIC", "error_on_nan": False, "error_on_inf": False}))
    quantizer.import_parameters({"global_scale": NONFINITE["scale"], "global_zero_point": zp})

    result = quantizer.quantize(x)
    codes = result.data.astype(np.int64)
    assert codes[0] == zp
    np.testing.assert_array_equal(codes[1:], ort_q[1:])
    assert result.delta.clipped_values == 3
