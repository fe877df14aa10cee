"""The quality report against an independent numpy computation, for every type and granularity.

The reference dequantizes the answer itself from the codes and the parameters the call reports (integer codes:
(q - zp) * scale, exact in float64 and rounded once to float32 as a float32 product is; FP8 values times their
scale; blocks with their scale repeated along the axis) and computes every figure in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from engine import QualityStats, QuantizationConfig, Quantizer, quality_report

F32 = np.float32
INTEGER = ("INT8", "UINT8", "INT16", "INT4", "UINT4")
FP8 = ("FP8_E4M3", "FP8_E5M2")
CASTS = ("FLOAT16", "BFLOAT16", "NONE")


def reference_dequantized(result, qtype: str, x: np.ndarray, fake: bool) -> np.ndarray:
    out = np.asarray(result.data)
    if fake or result.params is None:
        return out.astype(F32)
    p = result.params
    scale = np.asarray(p.scale, np.float64)
    zp = np.zeros_like(scale) if qtype in FP8 else np.asarray(p.zero_point, np.float64)
    if p.block_size is not None:
        scale = np.repeat(scale, p.block_size, axis=p.axis).take(np.arange(x.shape[p.axis]), axis=p.axis)
        zp = np.repeat(zp, p.block_size, axis=p.axis).take(np.arange(x.shape[p.axis]), axis=p.axis)
    elif p.axis is not None:
        shape = [1] * x.ndim
        shape[p.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((out.astype(np.float64) - zp) * scale).astype(F32)


def sqnr(x: np.ndarray, d: np.ndarray) -> float | None:
    signal, noise = float(np.sum(x * x)), float(np.sum((d - x) ** 2))
    return None if signal == 0 or noise == 0 else 10 * math.log10(signal / noise)


def assert_sqnr(got: float | None, want: float | None) -> None:
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert got == pytest.approx(want, abs=1e-4)


def check(report, x: np.ndarray, d: np.ndarray, axis: int | None) -> None:
    x64, d64 = x.astype(np.float64), d.astype(np.float64)
    e = d64 - x64
    assert_sqnr(report.sqnr_db, sqnr(x64, d64))
    scale_of_error = max(float(np.max(np.abs(e))), 1e-30)
    assert report.max_abs_error == pytest.approx(float(np.max(np.abs(e))), rel=1e-6, abs=1e-12)
    assert report.rms_error == pytest.approx(float(np.sqrt(np.mean(e * e))), rel=1e-5, abs=1e-12)
    assert abs(report.mean_error - float(np.mean(e))) <= 1e-5 * scale_of_error + 1e-12
    assert report.range == (float(x.min()), float(x.max()))
    assert report.values == x.size
    assert report.clipped_share == report.clipped / x.size
    if axis is None:
        assert report.channel_sqnr_db is None
    else:
        xs, ds = np.moveaxis(x64, axis, 0), np.moveaxis(d64, axis, 0)
        assert len(report.channel_sqnr_db) == x.shape[axis]
        for got, xc, dc in zip(report.channel_sqnr_db, xs, ds, strict=True):
            assert_sqnr(got, sqnr(xc, dc))


arrays = hnp.arrays(
    F32, hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=9),
    elements=st.floats(-1e4, 1e4, width=32, allow_nan=False),
)


@pytest.mark.parametrize("fake", [False, True], ids=["quantize", "quantize_dequantize"])
@pytest.mark.parametrize(("qtype", "granularity"), [
    *[(t, g) for t in INTEGER + FP8 for g in ("tensor", "channel", "block")],
    *[(t, "tensor") for t in CASTS],
])
@settings(max_examples=15, deadline=None)
@given(x=arrays, symmetric=st.booleans())
def test_report_matches_numpy(qtype: str, granularity: str, fake: bool, x: np.ndarray, symmetric: bool) -> None:
    config = {"quantization_type": qtype, "symmetric": symmetric, "enable_cache": False}
    if granularity == "channel":
        config["per_channel"] = True
    elif granularity == "block":
        config["group_size"] = 4
    q = Quantizer(QuantizationConfig.from_dict(config))
    op = q.quantize_dequantize if fake else q.quantize
    result = op(x, channel_dim=1 if granularity == "channel" else None, report=True)
    d = reference_dequantized(result, qtype, x, fake)
    axis = 1 if granularity == "channel" else None
    if axis is not None:
        assert result.params is not None
        assert result.params.axis == 1
    check(result.report, x, d, axis)
    assert result.report.clipped == result.delta.clipped_values


def test_calibrated_instance_reports_its_clipping() -> None:
    """Frozen parameters narrower than the data: the clipped values are counted and dominate the error."""
    rng = np.random.default_rng(1)
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8", "enable_cache": False}))
    q.calibrate([rng.uniform(-1, 1, 1000).astype(F32)])
    x = rng.uniform(-4, 4, (64, 1000)).astype(F32)  # large enough for the blocked path
    result = q.quantize(x, report=True)
    clipped = int(np.count_nonzero(np.abs(x) > 1.01))
    assert result.report.clipped == pytest.approx(clipped, rel=0.05)
    check(result.report, x, reference_dequantized(result, "INT8", x, False), None)


@pytest.mark.parametrize("per_channel", [False, True])
def test_large_arrays_match_numpy(per_channel: bool) -> None:
    """Several blocks: the running float64 sums of float32 block reductions."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((300, 700)) * rng.uniform(0.1, 10, (300, 1))).astype(F32)
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8", "per_channel": per_channel,
                                                "enable_cache": False}))
    for op in (q.quantize, q.quantize_dequantize):
        result = op(x, channel_dim=0 if per_channel else None, report=True)
        check(result.report, x, reference_dequantized(result, "INT8", x, op == q.quantize_dequantize),
              0 if per_channel else None)


def test_exact_and_all_zero_inputs_report_null_sqnr() -> None:
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8", "symmetric": True}))
    exact = q.quantize(np.array([[-127.0, 0.0, 127.0]], F32), report=True).report
    assert exact.sqnr_db is None
    assert exact.max_abs_error == 0.0
    assert exact.rms_error == 0.0
    zeros = q.quantize(np.zeros((2, 3), F32), report=True).report
    assert zeros.sqnr_db is None
    assert zeros.range == (0.0, 0.0)
    assert "Infinity" not in str(exact.to_dict())
    assert "inf" not in str(zeros.to_dict())


def test_non_finite_values_are_left_out_of_the_figures() -> None:
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8", "error_on_nan": False,
                                                "error_on_inf": False}))
    x = np.array([[1.0, np.nan, -2.0, np.inf, 0.5]], F32)
    report = q.quantize_dequantize(x, report=True).report
    finite = np.isfinite(x)
    d = q.quantize_dequantize(x).data
    e = d[finite].astype(np.float64) - x[finite]
    assert report.rms_error == pytest.approx(float(np.sqrt(np.mean(e * e))))
    assert report.range == (-2.0, 1.0)
    assert report.clipped == 2
    assert report.values == 5


def test_without_report_nothing_is_computed() -> None:
    q = Quantizer()
    assert q.quantize(np.ones((2, 2), F32)).report is None
    assert q.quality == QualityStats()


def test_quality_stats_latest_lowest_and_clipped_share() -> None:
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8", "symmetric": True}))
    assert q.quality.to_dict() == {"latest_sqnr_db": None, "min_sqnr_db": None, "clipped_share": None,
                                   "reported_calls": 0}
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 50)).astype(F32), rng.standard_normal((3, 10)).astype(F32)
    ra = q.quantize(a, report=True).report
    q.quantize(a)  # not reported: changes nothing
    rb = q.quantize(b, report=True).report
    q.quantize(np.array([[-127.0, 127.0]], F32), report=True)  # exact: latest null, lowest unchanged
    quality = q.quality.to_dict()
    assert quality["latest_sqnr_db"] is None
    assert quality["min_sqnr_db"] == min(ra.sqnr_db, rb.sqnr_db)
    assert quality["clipped_share"] == (ra.clipped + rb.clipped) / (a.size + b.size + 2)
    assert quality["reported_calls"] == 3
    q.reset_stats()
    assert q.quality == QualityStats()


def test_quality_report_rejects_shapes_that_differ() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        quality_report(np.zeros(3, F32), np.zeros(4, F32), 0)


def test_calibration_keeps_a_64_bin_histogram_of_all_batches() -> None:
    """Every value is counted once, in the bin numpy puts it in on the same edges."""
    rng = np.random.default_rng(4)
    batches = [rng.normal(0, 1, (50, 20)).astype(F32), rng.normal(3, 2, (30, 20)).astype(F32)]
    for method in ("MINMAX", "PERCENTILE", "MSE"):
        q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8", "calibration_method": method}))
        q.calibrate(batches)
        hist = q.export_parameters()["calibration"]["histogram"]
        assert len(hist["counts"]) == 64
        values = np.concatenate([b.ravel() for b in batches]).astype(np.float64)
        edges = hist["first_edge"] + hist["bin_width"] * np.arange(65)
        assert edges[0] <= values.min()
        assert values.max() <= edges[-1]
        want = np.clip(np.floor(values / hist["bin_width"]) - round(hist["first_edge"] / hist["bin_width"]), 0, 63)
        assert hist["counts"] == np.bincount(want.astype(int), minlength=64).tolist()


def test_calibration_histogram_of_one_value() -> None:
    q = Quantizer(QuantizationConfig.from_dict({"quantization_type": "INT8"}))
    q.calibrate([np.full((3, 4), 2.5, F32)])
    assert q.export_parameters()["calibration"]["histogram"] == {"counts": [12], "first_edge": 2.5, "bin_width": 0.0}
