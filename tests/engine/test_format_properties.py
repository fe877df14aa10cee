"""Properties of the new number formats (INT4 / UINT4 with groups, FP8, BFLOAT16) for every input (hypothesis);
expected values come from numpy written here, never from the engine's kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from engine import QParamsRule, QuantizationConfig, Quantizer, kernels, ranges, scale_zero_point

PROPERTY = settings(max_examples=120, deadline=None, database=None)
finite = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)
any_float = st.floats(width=32)


def float_arrays(elements: st.SearchStrategy[float] = finite) -> st.SearchStrategy[npt.NDArray[np.float32]]:
    return arrays(np.float32, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9), elements=elements)


def quantizer(**fields: Any) -> Quantizer:
    return Quantizer(QuantizationConfig.from_dict(fields))


@PROPERTY
@given(x=float_arrays(), signed=st.booleans(), symmetric=st.booleans(), group=st.sampled_from([0, 1, 2, 3, 4, 7]),
       rule=st.sampled_from(["onnx", "ort_tooling", "torch"]))
def test_int4_codes_in_range_and_error_within_half_a_step(x: npt.NDArray[np.float32], signed: bool, symmetric: bool,
                                                          group: int, rule: str) -> None:
    """Codes in -8..7 / 0..15; inside the representable range |x - dq| <= scale / 2 (plus float32 rounding)."""
    qtype = "INT4" if signed else "UINT4"
    q = quantizer(quantization_type=qtype, symmetric=symmetric, group_size=group, qparams_rule=rule)
    result = q.quantize(x)
    lo, hi = (-8, 7) if signed else (0, 15)
    codes = result.data.astype(np.int64)
    assert codes.min() >= lo
    assert codes.max() <= hi
    assert result.params is not None
    if group:
        scale = np.repeat(result.params.scale, group, axis=-1)[..., : x.shape[-1]]
        zp = np.repeat(result.params.zero_point, group, axis=-1)[..., : x.shape[-1]]
    else:
        scale, zp = result.params.scale, result.params.zero_point
    scale64 = np.asarray(scale, np.float64)
    dq = (codes - zp) * scale64
    inside = (x >= (lo - zp) * scale64) & (x <= (hi - zp) * scale64)
    err = np.abs(x.astype(np.float64) - dq)
    assert np.all(err[inside] <= (scale64 / 2 * (1 + 2.0**-20) + np.abs(x) * 2.0**-23)[inside])


def _fp8_grid(fmt: str) -> npt.NDArray[np.float64]:
    """Every finite float8 value, from the format's definition."""
    mbits, bias, top_exp = (3, 7, 15) if fmt == "FP8_E4M3" else (2, 15, 30)
    values = [m / 2**mbits * 2.0 ** (1 - bias) for m in range(2**mbits)]
    values += [(1 + m / 2**mbits) * 2.0 ** (e - bias) for e in range(1, top_exp + 1) for m in range(2**mbits)]
    if fmt == "FP8_E4M3":
        values = values[:-1]  # S.1111.111 is NaN
    grid = np.asarray(values)
    return np.unique(np.concatenate([-grid, grid]))


@PROPERTY
@given(x=float_arrays(any_float), fmt=st.sampled_from(["FP8_E4M3", "FP8_E5M2"]), scale=st.floats(2.0**-10, 2.0**10,
                                                                                                    width=32))
def test_fp8_is_the_nearest_grid_value_and_monotone(x: npt.NDArray[np.float32], fmt: str, scale: float) -> None:
    """With a given scale: each answer is a float8 value nearest to x / scale (saturated, ties to the even
    mantissa); NaN stays NaN; the map is monotone."""
    q = quantizer(quantization_type=fmt, quantization_mode="STATIC", error_on_nan=False, error_on_inf=False)
    q.import_parameters({"global_scale": scale, "global_zero_point": 0})
    out = q.quantize(x).data.astype(np.float64)
    grid = _fp8_grid(fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.clip((x / np.float32(scale)).astype(np.float32).astype(np.float64), grid[0], grid[-1])
    nan = np.isnan(x)
    assert np.array_equal(np.isnan(out), nan)
    assert np.all(np.isin(out[~nan], grid))
    dist = np.abs(out[~nan] - v[~nan])
    best = np.min(np.abs(grid[None, :] - v[~nan][:, None]), axis=1) if v[~nan].size else dist
    assert np.array_equal(dist, best)
    order = np.argsort(x[~nan].reshape(-1), kind="stable")
    assert np.all(np.diff(out[~nan].reshape(-1)[order]) >= 0)


@PROPERTY
@given(bits=st.integers(0, 2**32 - 1).map(np.uint32))
def test_bfloat16_rounds_to_nearest_even(bits: np.uint32) -> None:
    """The BFLOAT16 answer is the nearest bfloat16 value (ties to an even last bit), NaN stays NaN."""
    x = np.asarray([bits], np.uint32).view(np.float32)
    q = quantizer(quantization_type="BFLOAT16", error_on_nan=False, error_on_inf=False)
    out = q.quantize(x).data
    if np.isnan(x[0]):
        assert np.isnan(out[0])
        return
    u = int(bits)
    down, up = u & 0xFFFF0000, (u & 0xFFFF0000) + 0x10000
    rest = u & 0xFFFF
    expected = down if rest < 0x8000 or (rest == 0x8000 and not (down >> 16) & 1) else up
    assert int(out.view(np.uint32)[0]) == expected


@pytest.mark.parametrize("fmt", ["FP8_E4M3", "FP8_E5M2"])
def test_fp8_rejects_non_float8_codes_on_dequantize(fmt: str) -> None:
    q = quantizer(quantization_type=fmt, quantization_mode="STATIC")
    q.import_parameters({"global_scale": 0.5, "global_zero_point": 0})
    assert q.dequantize(np.asarray([1.5, -2.0], np.float32)).data.tolist() == [0.75, -1.0]
    with pytest.raises(Exception, match="not finite"):
        q.dequantize(np.asarray([1.3], np.float32))


def test_block_parameters_export_import_round_trip() -> None:
    """A grouped instance's parameters export as nested block lists and import back to the same codes."""
    x = np.arange(-10, 10, dtype=np.float32).reshape(2, 10) / np.float32(3)
    source = quantizer(quantization_type="UINT4", group_size=4, quantization_mode="DYNAMIC")
    codes = source.quantize(x).data
    assert source.last_params is not None
    exported = {"block_scales": source.last_params.to_dict()["scale"],
                "block_zero_points": source.last_params.to_dict()["zero_point"], "block_size": 4, "block_axis": 1}
    assert np.asarray(exported["block_scales"]).shape == (2, 3)  # ceil(10 / 4) blocks along axis 1
    target = quantizer(quantization_type="UINT4", group_size=4, quantization_mode="STATIC")
    target.import_parameters(exported)
    state = target.export_parameters()
    assert (state["block_size"], state["block_axis"]) == (4, 1)
    assert state["block_scales"] == exported["block_scales"]
    np.testing.assert_array_equal(target.quantize(x).data, codes)
    again = quantizer(quantization_type="UINT4", group_size=4, quantization_mode="STATIC")
    again.import_parameters({k: v for k, v in state.items() if k.startswith("block_")})
    np.testing.assert_array_equal(again.quantize(x).data, codes)
    with pytest.raises(Exception, match="shape"):
        target.quantize(np.zeros((2, 13), np.float32))  # 4 blocks along axis 1, the parameters hold 3


def test_fp8_parameters_take_zero_points_of_zero_only() -> None:
    q = quantizer(quantization_type="FP8_E5M2", quantization_mode="STATIC")
    q.import_parameters({"per_channel_scales": [0.5, 2.0], "per_channel_zero_points": [0, 0], "channel_dim": 0})
    with pytest.raises(Exception, match="outside"):
        q.import_parameters({"global_scale": 1.0, "global_zero_point": 3})


def test_grouped_nan_and_inf_follow_error_on_nan_and_inf() -> None:
    """Grouped dynamic quantize: NaN / Inf are refused by default; allowed, NaN gets its block's zero point's code
    and the block's range is over its finite values."""
    x = np.asarray([[1.0, np.nan, -2.0, 4.0, np.inf, 0.5]], np.float32)
    with pytest.raises(Exception, match="NaN"):
        quantizer(quantization_type="INT4", group_size=3).quantize(x)
    q = quantizer(quantization_type="INT4", group_size=3, symmetric=True, error_on_nan=False, error_on_inf=False)
    result = q.quantize(x)
    assert result.params is not None
    # block 0: amax 2 -> scale 2/7; block 1: finite amax 4 -> scale 4/7 (onnx rule: float32(amax) / float32(7))
    np.testing.assert_array_equal(result.params.scale, np.asarray([[np.float32(2) / np.float32(7),
                                                                    np.float32(4) / np.float32(7)]], np.float32))
    s0, s1 = np.float32(2) / np.float32(7), np.float32(4) / np.float32(7)
    expected = [[int(np.rint(np.float32(1.0) / s0)), 0, -7, 7, 7, int(np.rint(np.float32(0.5) / s1))]]
    assert result.data.tolist() == expected  # NaN -> zp 0, +inf saturates to 7
    assert result.delta.clipped_values == 2


def _block_reference(x: npt.NDArray[np.float32], group: int, qtype: str, symmetric: bool, rule: str
                     ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(scales, zero points, codes) of dynamic blocks along the last axis, the blocks' ranges and codes by numpy
    here, the parameters by scale_zero_point (checked against ORT by test_formats_vectors) for the calibration
    range each rule uses with blocks."""
    qmin, qmax = (-8, 7) if qtype == "INT4" else (0, 15)
    # onnx narrows symmetric signed ranges; torch never does; ort_tooling's blocked rule is onnx over the full range
    cmin = -qmax if rule == "onnx" and symmetric and qmin < 0 else qmin
    nb = -(-x.shape[-1] // group)
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, nb * group - x.shape[-1])], mode="edge")
    blocks = padded.reshape(*x.shape[:-1], nb, group)
    scale, zp = scale_zero_point(blocks.min(axis=-1), blocks.max(axis=-1), cmin, qmax, symmetric,
                                 QParamsRule.torch if rule == "torch" else QParamsRule.onnx)
    s = np.repeat(scale, group, axis=-1)[..., : x.shape[-1]]
    z = np.repeat(zp, group, axis=-1)[..., : x.shape[-1]]
    codes = np.clip(np.rint(x / s).astype(np.int64) + z, qmin, qmax)
    return scale, zp, codes


@PROPERTY
@given(x=float_arrays(st.one_of(st.just(0.0), finite, st.floats(-2.0**-126, 2.0**-126, width=32))),
       signed=st.booleans(), symmetric=st.booleans(), group=st.sampled_from([1, 2, 3, 4, 7, 16]),
       rule=st.sampled_from(["onnx", "ort_tooling", "torch"]), fake=st.booleans())
def test_grouped_dynamic_one_pass_equals_numpy(x: npt.NDArray[np.float32], signed: bool, symmetric: bool,
                                               group: int, rule: str, fake: bool) -> None:
    """Dynamic groups along the last axis (ranges, parameters and codes in one pass; all-zero and subnormal
    blocks take the two passes): parameters and codes as numpy gives them, fake quantization (codes - zp) * s."""
    qtype = "INT4" if signed else "UINT4"
    q = quantizer(quantization_type=qtype, symmetric=symmetric, group_size=group, qparams_rule=rule)
    scale, zp, codes = _block_reference(x, group, qtype, symmetric, rule)
    result = q.quantize_dequantize(x) if fake else q.quantize(x)
    assert result.params is not None
    assert np.array_equal(result.params.scale.view(np.uint32), scale.view(np.uint32))
    np.testing.assert_array_equal(result.params.zero_point, zp)
    if fake:
        s = np.repeat(scale, group, axis=-1)[..., : x.shape[-1]]
        z = np.repeat(zp, group, axis=-1)[..., : x.shape[-1]]
        expected = (codes - z).astype(np.float32) * s
        assert np.array_equal(result.data.view(np.uint32), (expected + np.float32(0)).view(np.uint32))
    else:
        np.testing.assert_array_equal(result.data.astype(np.int64), codes)
        lo, hi = (-8, 7) if signed else (0, 15)
        unclipped = np.rint(x / np.repeat(scale, group, axis=-1)[..., : x.shape[-1]]).astype(np.int64) + np.repeat(
            zp, group, axis=-1)[..., : x.shape[-1]]
        assert result.delta.clipped_values == int(np.count_nonzero((unclipped < lo) | (unclipped > hi)))


def test_grouped_one_pass_takes_finite_last_axis_blocks_only() -> None:
    """The one pass answers finite data in blocks along the last axis (numpy's parameters and codes), and turns
    down an all-zero block (float64 fallback), NaN and blocks along an inner axis, which take two passes."""
    q = quantizer(quantization_type="INT4", group_size=4, symmetric=True)
    plan = q.layer_plan(None)
    x = np.arange(-12, 12, dtype=np.float32).reshape(2, 12) / np.float32(5)
    done = ranges.quantize_blocks(q.config, x, plan, 1, False)
    assert done is not None
    scale, zp, codes = _block_reference(x, 4, "INT4", True, q.config.qparams_rule.name)
    np.testing.assert_array_equal(done[0], codes)
    assert np.array_equal(done[2].scale.view(np.uint32), scale.view(np.uint32))
    np.testing.assert_array_equal(done[2].zero_point, zp)
    zero_block, nan = x.copy(), x.copy()
    zero_block[0, :4] = 0
    nan[1, 5] = np.nan
    assert ranges.quantize_blocks(q.config, zero_block, plan, 1, False) is None
    assert ranges.quantize_blocks(q.config, nan, plan, 1, False) is None
    assert ranges.quantize_blocks(q.config, x.T.copy(), plan, 0, False) is None


QRANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}


@pytest.mark.parametrize("qtype", list(QRANGES))
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("rule", ["onnx", "torch"])
@pytest.mark.parametrize("fake", [False, True])
@pytest.mark.parametrize("one_value", [False, True])
def test_per_channel_dynamic_one_pass_equals_numpy(qtype: str, symmetric: bool, rule: str, fake: bool,
                                                   one_value: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dynamic per channel, each channel one contiguous run of 64 or more: ranges, parameters and codes in one
    pass, except where an all-zero channel needs onnx's float64 fallback (then two passes): parameters by
    scale_zero_point over numpy's per-row range, codes and fake values by numpy here, the clipped count of the
    rounded values outside the grid."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((37, 3, 40)) * rng.uniform(0.01, 50.0, (37, 1, 1))).astype(np.float32)
    x[2] = np.abs(x[2])  # a channel of positive values only
    x[3] = -np.abs(x[3])  # and of negative values only
    if one_value:
        x[4] = 0.0  # range [0, 0]: onnx's rule falls back to float64 there
    qmin, qmax = QRANGES[qtype]
    q = quantizer(quantization_type=qtype, symmetric=symmetric, per_channel=True, qparams_rule=rule)
    cmin = -qmax if rule == "onnx" and symmetric and qmin < 0 else qmin  # onnx narrows symmetric signed ranges
    rows = x.reshape(37, -1)
    scale, zp = scale_zero_point(rows.min(axis=1), rows.max(axis=1), cmin, qmax, symmetric,
                                 QParamsRule.torch if rule == "torch" else QParamsRule.onnx)
    s, z = scale[:, None, None], zp[:, None, None]
    unclipped = np.rint(x / s).astype(np.int64) + z
    codes = np.clip(unclipped, qmin, qmax)
    answered = []
    one_pass = ranges.quantize_channels
    monkeypatch.setattr(ranges, "quantize_channels", lambda *a: answered.append(one_pass(*a)) or answered[-1])
    result = q.quantize_dequantize(x, channel_dim=0) if fake else q.quantize(x, channel_dim=0)
    assert (answered[0] is not None) == (not one_value or rule == "torch")  # which path this case tested
    assert result.params is not None
    assert np.array_equal(result.params.scale.view(np.uint32), scale.view(np.uint32))
    np.testing.assert_array_equal(result.params.zero_point, zp)
    if fake:
        expected = (codes - z).astype(np.float32) * s
        assert np.array_equal(result.data.view(np.uint32), (expected + np.float32(0)).view(np.uint32))
    else:
        np.testing.assert_array_equal(result.data.astype(np.int64), codes)
        assert result.delta.clipped_values == int(np.count_nonzero((unclipped < qmin) | (unclipped > qmax)))


@PROPERTY
@given(x=arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(64, 200)),
                elements=st.one_of(finite, st.just(0.0), st.just(-0.0), st.floats(-2.0**-126, 2.0**-126, width=32))),
       qtype=st.sampled_from(list(QRANGES)), symmetric=st.booleans(), rule=st.sampled_from(["onnx", "torch"]),
       fake=st.booleans(), threads=st.sampled_from([1, 2]), scale=st.sampled_from([1.0, 1e-30, 1e30]))
def test_per_channel_one_pass_report_equals_two_passes(x: npt.NDArray[np.float32], qtype: str, symmetric: bool,
                                                       rule: str, fake: bool, threads: int, scale: float) -> None:
    """Dynamic per channel with the report: the one pass (each channel's range, parameters, codes and the report's
    sums while it is in cache) gives the very figures, bit for bit, that the range pass and the report's quantize
    pass give, with the same codes and parameters (when it answers: all-zero or tiny channels need onnx's float64
    fallback, and both sides then take the two passes); rows split over threads alike."""
    x = (x * np.float32(scale)).astype(np.float32)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=1e30, neginf=-1e30).astype(np.float32)
    if threads > 1:  # enough values for the rows to be split (kernels.PARALLEL_MIN)
        x = np.tile(x, (64, -(-4096 // x.shape[1])))
    answered: list[Any] = []
    one_pass = ranges.quantize_channels
    outcomes = []
    for patched in (False, True):
        q = quantizer(quantization_type=qtype, symmetric=symmetric, per_channel=True, qparams_rule=rule)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ranges, "quantize_channels", (lambda *a: None) if patched else (
                lambda *a: answered.append(one_pass(*a)) or answered[-1]))
            with kernels.threads(threads):
                op = q.quantize_dequantize if fake else q.quantize
                outcomes.append(op(x, channel_dim=0, report=True))
    one, two = outcomes
    assert one.params is not None
    assert two.params is not None
    assert np.array_equal(one.params.scale.view(np.uint32), two.params.scale.view(np.uint32))
    np.testing.assert_array_equal(one.params.zero_point, two.params.zero_point)
    assert np.array_equal(one.data.view(np.uint8), two.data.view(np.uint8))
    assert one.delta.clipped_values == two.delta.clipped_values
    assert one.report is not None
    assert two.report is not None
    assert one.report.to_dict() == two.report.to_dict()
    assert [np.array_equal(a, b) for a, b in zip(one.report.channel_sums or (), two.report.channel_sums or (),
                                                  strict=True)] == [True, True]
    if answered[0] is not None:  # which path the first call took: the one pass gave its sums
        assert answered[0][3] is not None


def test_per_channel_one_pass_takes_contiguous_finite_runs_only() -> None:
    """The one pass answers channels that are contiguous runs of 64 or more, and turns down short runs, a channel
    axis after a longer one, NaN, percentiles and the float64 ort_tooling rule (those take two passes)."""
    q = quantizer(per_channel=True)
    plan = q.layer_plan(None)
    x = np.random.default_rng(5).standard_normal((6, 64)).astype(np.float32)
    assert ranges.quantize_channels(q.config, x, plan, 0, False) is not None
    two_pass = quantizer(per_channel=True, qparams_rule="ort_tooling")
    assert ranges.quantize_channels(two_pass.config, x, two_pass.layer_plan(None), 0, False) is None
    nan = x.copy()
    nan[1, 7] = np.nan
    assert ranges.quantize_channels(q.config, nan, plan, 0, False) is None
    assert ranges.quantize_channels(q.config, x[:, :63].copy(), plan, 0, False) is None
    assert ranges.quantize_channels(q.config, x.T.copy(), plan, 1, False) is None
    pct = quantizer(per_channel=True, use_percentile=True)
    assert ranges.quantize_channels(pct.config, x, pct.layer_plan(None), 0, False) is None
