"""The small-array path of the quantize kernel (kernels.SMALL_ELEMENTS) gives the bits and clipped counts of the
block path, and engine/small.py's scalar shortcuts the results of the array code they stand in for. Kernel: every
array here goes through both paths (the block one forced by SMALL_ELEMENTS = 0, with 1024-element blocks so that
arrays up to the threshold span several), per tensor and per channel, for every code type."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from engine import QParams, QuantizationConfig, QuantizationType, Quantizer, kernels, ranges, small
from engine.qparams import STORAGE_DTYPES, calibration_range, qrange, scale_zero_point

F32 = np.float32
INTEGER_TYPES = (QuantizationType.INT8, QuantizationType.UINT8, QuantizationType.INT16)
SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 127.5, -128.5, 255.5, 1e30,
           -1e30, 3.4028235e38, -3.4028235e38, 1e-45, 126.49999, 4194303.5, -4194304.5]


def both_paths(x: npt.NDArray[np.float32], params: QParams, qmin: int, qmax: int, dtype: Any,
               monkeypatch: pytest.MonkeyPatch, **kw: Any) -> None:
    assert x.size <= kernels.SMALL_ELEMENTS
    small, small_clipped = kernels.quantize_counted(x, params, qmin, qmax, dtype, count_clipped=True, **kw)
    small_plain = kernels.quantize_counted(x, params, qmin, qmax, dtype, count_clipped=False, **kw)[0]
    with monkeypatch.context() as m:
        m.setattr(kernels, "SMALL_ELEMENTS", 0)
        ws = kernels.Workspace(1024)
        block, block_clipped = kernels.quantize_counted(x, params, qmin, qmax, dtype, count_clipped=True,
                                                        workspace=ws, **kw)
    assert small.dtype == block.dtype
    assert small.shape == block.shape
    assert small.tobytes() == block.tobytes()  # bits: NaN payloads, signed zeros and all
    assert small_plain.tobytes() == block.tobytes()
    assert small_clipped == block_clipped


def sweep_cases() -> list[tuple[Any, ...]]:
    return list(itertools.product(INTEGER_TYPES, (False, True), (False, True, None), (None, 0, 1)))


@pytest.mark.parametrize(("qtype", "fake", "nan_zp", "axis"), sweep_cases())
def test_sweep_of_special_values(qtype: Any, fake: bool, nan_zp: bool | None, axis: int | None,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    qmin, qmax = qrange(qtype, qtype.width)
    dtype = F32 if fake else STORAGE_DTYPES[qtype]
    rng = np.random.default_rng(7)
    values = np.array(SPECIAL, dtype=F32)
    for shape in [(len(SPECIAL),), (1, 1), (2, 3), (len(SPECIAL), 3), (5, len(SPECIAL)), (64, 64), (4096,)]:
        if axis is not None and axis >= len(shape):
            continue
        with np.errstate(over="ignore"):
            x = rng.choice(values, size=shape).astype(F32) * rng.choice(np.array([1, 1, 2, 0.25], F32), size=shape)
        if axis is None:
            scales = [1.0, 0.5, 1 / 3, 1e-3, 1e3]
            for scale, zp in itertools.product(scales, (0, 1, -3, qmin, qmax)):
                params = QParams.of(scale, int(np.clip(zp, qmin, qmax)))
                both_paths(x, params, qmin, qmax, dtype, monkeypatch, nan_to_zero_point=nan_zp,
                           dequantize_after=fake)
        else:
            channels = shape[axis]
            params = QParams.of(rng.choice(np.array([1.0, 0.5, 1e-3, 1 / 3], F32), channels),
                                rng.integers(qmin, qmax + 1, channels), axis)
            both_paths(x, params, qmin, qmax, dtype, monkeypatch, nan_to_zero_point=nan_zp, dequantize_after=fake)


@st.composite
def small_case(draw: st.DrawFn) -> tuple[Any, ...]:
    qtype = draw(st.sampled_from(INTEGER_TYPES))
    bits = draw(st.integers(2, qtype.width))
    qmin, qmax = qrange(qtype, bits)
    x = draw(arrays(F32, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12),
                    elements=st.one_of(st.floats(width=32), st.sampled_from(SPECIAL).map(F32),
                                       st.integers(-300, 300).map(lambda v: F32(v + 0.5)))))
    axis = draw(st.one_of(st.none(), st.integers(0, x.ndim - 1)))
    n = 1 if axis is None else x.shape[axis]
    scale = draw(arrays(F32, n, elements=st.floats(2.0**-20, 2.0**10, width=32)))
    zp = draw(arrays(np.int64, n, elements=st.integers(qmin, qmax)))
    params = QParams.of(scale[0], zp[0]) if axis is None else QParams.of(scale, zp, axis)
    return x, params, qmin, qmax, qtype, draw(st.booleans()), draw(st.sampled_from([False, True, None]))


@settings(max_examples=300, deadline=None, database=None)
@given(small_case())
def test_random_small_arrays(case: tuple[Any, ...]) -> None:
    x, params, qmin, qmax, qtype, fake, nan_zp = case
    with pytest.MonkeyPatch.context() as monkeypatch:
        both_paths(x, params, qmin, qmax, F32 if fake else STORAGE_DTYPES[qtype], monkeypatch,
                   nan_to_zero_point=nan_zp, dequantize_after=fake)


def test_quantizer_small_and_large_agree() -> None:
    """Through the Quantizer, stats included: the spec's example, and per-channel data with NaN and inf."""
    x = np.array([[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], F32)
    result = Quantizer(QuantizationConfig()).quantize(x)
    assert result.data.tolist() == [[-94, -32, 31], [93, 127, -69]]
    y = np.array([[np.nan, 1.0, -np.inf, 2.5], [0.5, -0.5, 1e30, 3.0]], F32)
    config = QuantizationConfig.from_dict({"per_channel": True, "error_on_nan": False, "error_on_inf": False})
    small = Quantizer(config).quantize(y, channel_dim=1)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kernels, "SMALL_ELEMENTS", 0)
        block = Quantizer(config).quantize(y, channel_dim=1)
    assert small.data.tobytes() == block.data.tobytes()
    assert small.delta.clipped_values == block.delta.clipped_values
    assert small.params == block.params


# ---------------------------------------------------------------------- engine/small.py: scalars vs arrays
def range_ends() -> list[float]:
    ends = [0.0, -0.0, 1e-45, -1e-45, 1e-38, 1.2e-38, 1e-30, 0.1, -0.1, 1.0, -1.0, 2.5, 9.0, -7.3, 255.0, 1e6,
            -1e6, 3.4028235e38, -3.4028235e38, 1.7e38, -1.7e38]
    rng = np.random.default_rng(3)
    return ends + [float(v) for v in rng.standard_normal(30).astype(F32) * F32(10) ** rng.integers(-8, 8, 30)]


@pytest.mark.parametrize("qtype", INTEGER_TYPES)
def test_scalar_clip_check_matches_arrays(qtype: Any) -> None:
    ends = [F32(v) for v in range_ends()]
    for bits in sorted({2, 7, qtype.width}):
        qmin, qmax = qrange(qtype, bits)
        for symmetric in (False, True):
            cmin, cmax = calibration_range(qmin, qmax, symmetric)
            for lo, hi in itertools.product(ends, ends):
                if lo > hi:
                    continue
                scale, zp = scale_zero_point(lo, hi, cmin, cmax, symmetric)
                params = QParams.of(scale, zp)
                with np.errstate(over="ignore"):
                    wider = ((lo, hi), (lo * F32(2), hi), (lo, hi * F32(2)))
                for a, b in wider:
                    expected = not (bool(np.all(kernels.code_of(np.asarray(a, F32), params) >= qmin))
                                    and bool(np.all(kernels.code_of(np.asarray(b, F32), params) <= qmax)))
                    got = small.may_clip(params, qmin, qmax, a, b)
                    assert got is None or got == expected, (a, b, lo, hi)


@pytest.mark.parametrize("fields", [{}, {"symmetric": True}, {"quantization_mode": "symmetric"},
                                    {"quantization_type": "uint8"}, {"quantization_type": "int16", "num_bits": 12}])
def test_scalar_dynamic_params_match_ranges(fields: dict[str, Any]) -> None:
    config = QuantizationConfig.from_dict(fields)
    plan = Quantizer(config).layer_plan(None)
    rng = np.random.default_rng(5)
    for scale in (1e-30, 1e-3, 1.0, 1e3, 1e30):
        x = (rng.standard_normal((3, 4)) * scale + rng.choice([-scale, 0, scale])).astype(F32)
        raw = kernels.minmax(x)
        assert small.dynamic_params(config, x, plan, None, raw) == ranges.dynamic_params(config, x, plan, None, raw)
