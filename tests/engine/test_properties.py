"""Properties of the numeric core that hold for every input (hypothesis, bounded)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from engine import QParams, QuantizationConfig, QuantizationType, Quantizer, kernels, qrange
from engine.qparams import STORAGE_DTYPES

PROPERTY = settings(max_examples=150, deadline=None, database=None)
INTEGER_TYPES = (QuantizationType.INT8, QuantizationType.UINT8, QuantizationType.INT16)

finite = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
any_float = st.floats(width=32)  # NaN and +-inf included
scales = st.floats(2.0**-13, 2.0**13, width=32)


@st.composite
def type_and_bits(draw: st.DrawFn) -> tuple[QuantizationType, int]:
    qtype = draw(st.sampled_from(INTEGER_TYPES))
    return qtype, draw(st.integers(2, qtype.width))


def float_arrays(elements: st.SearchStrategy[float] = finite, min_dims: int = 1,
                 max_dims: int = 3) -> st.SearchStrategy[npt.NDArray[np.float32]]:
    return arrays(np.float32, array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=6),
                  elements=elements)


def config(qtype: QuantizationType, bits: int, **fields: Any) -> QuantizationConfig:
    return QuantizationConfig.from_dict({"quantization_type": qtype.name, "num_bits": bits, **fields})


def slack(x: npt.NDArray[Any], dq: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Float32 rounding of x / scale and of (q - zp) * scale: a few units in the last place of the values."""
    return (np.abs(x.astype(np.float64)) + np.abs(dq.astype(np.float64))) * 2.0**-21 + 1e-44


# ---------------------------------------------------------------------- codes stay in [qmin, qmax]
@PROPERTY
@given(tb=type_and_bits(), symmetric=st.booleans(), x=float_arrays(any_float))
def test_dynamic_codes_in_range(tb: tuple[QuantizationType, int], symmetric: bool,
                                x: npt.NDArray[np.float32]) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    quantizer = Quantizer(config(qtype, bits, symmetric=symmetric, error_on_nan=False, error_on_inf=False))
    codes = quantizer.quantize(x).data
    assert codes.dtype == STORAGE_DTYPES[qtype]
    assert codes.shape == x.shape
    assert codes.min() >= qmin
    assert codes.max() <= qmax


@PROPERTY
@given(tb=type_and_bits(), data=st.data(), x=float_arrays(any_float))
def test_codes_in_range_for_any_parameters(tb: tuple[QuantizationType, int], data: st.DataObject,
                                           x: npt.NDArray[np.float32]) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    params = QParams.of(data.draw(st.floats(2.0**-100, 2.0**100, width=32)), data.draw(st.integers(qmin, qmax)))
    codes = kernels.quantize(x, params, qmin, qmax, STORAGE_DTYPES[qtype])
    assert codes.min() >= qmin
    assert codes.max() <= qmax
    np.testing.assert_array_equal(codes[np.isnan(x)], int(params.zero_point))


# ---------------------------------------------------------------------- the error is at most half a step
@PROPERTY
@given(tb=type_and_bits(), scale=scales, data=st.data())
def test_error_at_most_half_a_step_inside_the_range(tb: tuple[QuantizationType, int], scale: float,
                                                    data: st.DataObject) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    zp = data.draw(st.integers(qmin, qmax))
    lo, hi = (qmin - zp) * float(np.float32(scale)), (qmax - zp) * float(np.float32(scale))
    u = data.draw(arrays(np.float64, st.integers(1, 64), elements=st.floats(0, 1)))
    x = (lo + u * (hi - lo)).astype(np.float32)
    params = QParams.of(scale, zp)
    dq = kernels.dequantize(kernels.quantize(x, params, qmin, qmax, STORAGE_DTYPES[qtype]), params)
    err = np.abs(x.astype(np.float64) - dq.astype(np.float64))
    assert np.all(err <= float(np.float32(scale)) / 2 + slack(x, dq))


@PROPERTY
@given(tb=type_and_bits(), symmetric=st.booleans(), x=float_arrays())
def test_dynamic_error_at_most_half_a_step(tb: tuple[QuantizationType, int], symmetric: bool,
                                           x: npt.NDArray[np.float32]) -> None:
    """Dynamic parameters cover the data, so every element is inside the range."""
    qtype, bits = tb
    quantizer = Quantizer(config(qtype, bits, symmetric=symmetric))
    result = quantizer.quantize_dequantize(x)
    assert result.params is not None
    err = np.abs(x.astype(np.float64) - result.data.astype(np.float64))
    assert np.all(err <= float(result.params.scale) / 2 + slack(x, result.data))


# ---------------------------------------------------------------------- quantize(dequantize(q)) == q
@PROPERTY
@given(tb=type_and_bits(), scale=scales, data=st.data())
def test_quantize_after_dequantize_is_identity_on_codes(tb: tuple[QuantizationType, int], scale: float,
                                                        data: st.DataObject) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    params = QParams.of(scale, data.draw(st.integers(qmin, qmax)))
    codes = data.draw(arrays(STORAGE_DTYPES[qtype], array_shapes(max_dims=3, max_side=6),
                             elements=st.integers(qmin, qmax)))
    again = kernels.quantize(kernels.dequantize(codes, params), params, qmin, qmax, STORAGE_DTYPES[qtype])
    np.testing.assert_array_equal(again, codes)


@PROPERTY
@given(tb=type_and_bits(), data=st.data())
def test_quantizer_round_trip_on_codes_per_channel(tb: tuple[QuantizationType, int], data: st.DataObject) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    codes = data.draw(arrays(np.int64, array_shapes(min_dims=2, max_dims=3, max_side=5),
                             elements=st.integers(qmin, qmax)))
    axis = data.draw(st.integers(0, codes.ndim - 1))
    n = codes.shape[axis]
    quantizer = Quantizer(config(qtype, bits, quantization_mode="STATIC", per_channel=True))
    quantizer.import_parameters({
        "per_channel_scales": [float(s) for s in data.draw(st.lists(scales, min_size=n, max_size=n))],
        "per_channel_zero_points": data.draw(st.lists(st.integers(qmin, qmax), min_size=n, max_size=n)),
        "channel_dim": axis,
    })
    dq = quantizer.dequantize(codes).data
    np.testing.assert_array_equal(quantizer.quantize(dq).data.astype(np.int64), codes)


# ---------------------------------------------------------------------- per channel == per tensor on each slice
@PROPERTY
@given(tb=type_and_bits(), x=float_arrays(min_dims=2), data=st.data())
def test_per_channel_kernel_equals_per_tensor_slices(tb: tuple[QuantizationType, int], x: npt.NDArray[np.float32],
                                                     data: st.DataObject) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    axis = data.draw(st.integers(0, x.ndim - 1))
    n = x.shape[axis]
    params = QParams.of(data.draw(st.lists(scales, min_size=n, max_size=n)),
                        data.draw(st.lists(st.integers(qmin, qmax), min_size=n, max_size=n)), axis)
    dtype = STORAGE_DTYPES[qtype]
    codes = kernels.quantize(x, params, qmin, qmax, dtype)
    fake = kernels.quantize(x, params, qmin, qmax, dtype, dequantize_after=True)
    for c in range(n):
        one = QParams.of(params.scale[c], params.zero_point[c])
        expected = kernels.quantize(np.take(x, c, axis=axis), one, qmin, qmax, dtype)
        np.testing.assert_array_equal(np.take(codes, c, axis=axis), expected)
        np.testing.assert_array_equal(np.take(fake, c, axis=axis), kernels.dequantize(expected, one))


@PROPERTY
@given(tb=type_and_bits(), symmetric=st.booleans(), x=float_arrays(min_dims=2), data=st.data())
def test_dynamic_per_channel_equals_dynamic_per_tensor_slices(
    tb: tuple[QuantizationType, int], symmetric: bool, x: npt.NDArray[np.float32], data: st.DataObject
) -> None:
    qtype, bits = tb
    channel_dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    per_channel = Quantizer(config(qtype, bits, symmetric=symmetric, per_channel=True))
    per_tensor = Quantizer(config(qtype, bits, symmetric=symmetric))
    result = per_channel.quantize(x, channel_dim=channel_dim)
    assert result.params is not None
    assert result.params.axis == channel_dim % x.ndim
    for c in range(x.shape[channel_dim]):
        piece = np.take(x, c, axis=channel_dim)
        if piece.ndim == 0:
            piece = piece.reshape(1)
        one = per_tensor.quantize(piece)
        assert one.params is not None
        np.testing.assert_array_equal(np.take(result.data, c, axis=channel_dim).reshape(one.data.shape), one.data)
        assert result.params.scale[c] == one.params.scale
        assert result.params.zero_point[c] == one.params.zero_point


# ---------------------------------------------------------------------- quantize_dequantize == dequantize(quantize)
@PROPERTY
@given(tb=type_and_bits(), x=float_arrays(), data=st.data())
def test_fused_kernel_equals_dequantize_of_quantize(tb: tuple[QuantizationType, int], x: npt.NDArray[np.float32],
                                                    data: st.DataObject) -> None:
    qtype, bits = tb
    qmin, qmax = qrange(qtype, bits)
    params = QParams.of(data.draw(scales), data.draw(st.integers(qmin, qmax)))
    codes = kernels.quantize(x, params, qmin, qmax, STORAGE_DTYPES[qtype])
    fused = kernels.quantize(x, params, qmin, qmax, np.float32, dequantize_after=True)
    np.testing.assert_array_equal(fused.view(np.int32), kernels.dequantize(codes, params).view(np.int32))


@PROPERTY
@given(tb=type_and_bits(), symmetric=st.booleans(), per_channel=st.booleans(), x=float_arrays(min_dims=2))
def test_quantizer_quantize_dequantize_equals_dequantize_of_quantize(
    tb: tuple[QuantizationType, int], symmetric: bool, per_channel: bool, x: npt.NDArray[np.float32]
) -> None:
    qtype, bits = tb
    quantizer = Quantizer(config(qtype, bits, symmetric=symmetric, per_channel=per_channel))
    fused = quantizer.quantize_dequantize(x).data
    separate = quantizer.dequantize(quantizer.quantize(x).data).data
    np.testing.assert_array_equal(fused.view(np.int32), separate.view(np.int32))
