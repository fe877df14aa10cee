"""The Quantizer: every mode, every configuration field's effect, statistics, cache, parameters and each error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine import (
    InputError,
    NotCalibratedError,
    ParameterError,
    QParams,
    QuantizationConfig,
    QuantizationMode,
    QuantizationType,
    Quantizer,
    kernels,
    qrange,
)

MakeQuantizer = Callable[..., Quantizer]
F32 = np.float32
COUNTERS = ("clipped_values", "total_values", "quantize_calls", "dequantize_calls", "cache_hits", "cache_misses")
STAT_FIELDS = (*COUNTERS, "last_scale", "last_zero_point", "processing_time_ms")


def f32(values: Any) -> npt.NDArray[np.float32]:
    return np.asarray(values, dtype=F32)


def rows_with_ranges() -> npt.NDArray[np.float32]:
    """Three rows with very different ranges, so per-row and per-tensor parameters differ."""
    return f32([[-1.0, 0.0, 0.5, 1.0], [-100.0, 20.0, 40.0, 50.0], [0.001, 0.002, 0.003, 0.004]])


def reference_params(x: npt.NDArray[np.float32], qtype: QuantizationType = QuantizationType.INT8,
                     bits: int = 8) -> QParams:
    """Per-tensor parameters of a plain DYNAMIC quantizer (the tests' own yardstick)."""
    result = Quantizer(QuantizationConfig.from_dict({"quantization_type": qtype.name, "num_bits": bits})).quantize(x)
    assert result.params is not None
    return result.params


def rms(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def heavy_tailed(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    x = rng.standard_normal(4096).astype(F32)
    x[::512] = rng.choice([-1.0, 1.0], 8).astype(F32) * F32(60.0)
    return x


# ====================================================================== modes
def test_dynamic_mode_takes_parameters_from_each_call(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    first = quantizer.quantize(f32([[0.0, 1.275, 2.55]]))
    second = quantizer.quantize(f32([[-10.0, 30.0]]))
    assert first.params is not None
    assert second.params is not None
    assert first.params != second.params
    assert quantizer.last_params == second.params
    assert first.params.axis is None
    assert F32(first.params.scale) == F32(0.01)  # (2.55 - 0) / 255
    assert int(first.params.zero_point) == -128  # rmin 0 sits on qmin
    assert first.data.dtype == np.int8
    np.testing.assert_array_equal(first.data, [[-128, 0, 127]])


def test_symmetric_flag_and_symmetric_mode(make_quantizer: MakeQuantizer) -> None:
    x = f32([[-0.5, 2.0, 1.0]])
    for quantizer in (make_quantizer(symmetric=True), make_quantizer(quantization_mode="SYMMETRIC")):
        params = quantizer.compute_params(x)
        assert float(params.scale) == F32(2.0 / 127)  # amax / qmax: the calibrated range is [-127, 127]
        assert int(params.zero_point) == 0
        np.testing.assert_array_equal(quantizer.quantize(x).data, [[-32, 127, 64]])
    unsigned = make_quantizer(quantization_type="UINT8", quantization_mode="SYMMETRIC")
    params = unsigned.compute_params(x)
    assert float(params.scale) == F32(4.0 / 255)
    assert int(params.zero_point) == 128
    assert int(make_quantizer(quantization_type="INT16", symmetric=True).compute_params(x).zero_point) == 0


def test_dynamic_per_batch_gives_each_row_its_own_parameters(make_quantizer: MakeQuantizer) -> None:
    x = rows_with_ranges()
    quantizer = make_quantizer(quantization_mode="DYNAMIC_PER_BATCH")
    with pytest.raises(InputError, match="per-channel quantization only") as refused:
        quantizer.quantize(x, channel_dim=1)  # the batch axis is always 0: a channel_dim is refused, not ignored
    assert refused.value.code == "input.channel_dim"
    result = quantizer.quantize(x)
    assert result.params is not None
    assert result.params.axis == 0
    assert result.params.scale.shape == (3,)
    for row in range(3):
        expected = reference_params(x[row])
        assert result.params.scale[row] == expected.scale
        assert result.params.zero_point[row] == expected.zero_point
        np.testing.assert_array_equal(result.data[row], make_quantizer().quantize(x[row]).data)
    # dequantize uses the per-row parameters of that quantize
    restored = quantizer.dequantize(result.data).data
    assert np.all(np.abs(restored - x) <= result.params.scale[:, None] / 2 + 1e-6)


def test_dynamic_per_channel_ignores_per_channel_flag(make_quantizer: MakeQuantizer) -> None:
    x = rows_with_ranges()
    quantizer = make_quantizer(quantization_mode="DYNAMIC_PER_CHANNEL", per_channel=False)
    by_rows = quantizer.quantize(x)
    assert by_rows.params is not None
    assert by_rows.params.axis == 0
    by_columns = quantizer.quantize(x, channel_dim=1)
    assert by_columns.params is not None
    assert by_columns.params.axis == 1
    assert by_columns.params.scale.shape == (4,)
    for col in range(4):
        np.testing.assert_array_equal(by_columns.data[:, col], make_quantizer().quantize(x[:, col]).data)


@pytest.mark.parametrize("mode", ["STATIC", "CALIBRATED"])
def test_parameter_modes_need_parameters(make_quantizer: MakeQuantizer, mode: str) -> None:
    quantizer = make_quantizer(quantization_mode=mode)
    for call in (quantizer.quantize, quantizer.quantize_dequantize):
        with pytest.raises(NotCalibratedError) as info:
            call(f32([1.0, 2.0]))
        assert info.value.code == "state.not_calibrated"
        assert mode in info.value.message
    with pytest.raises(NotCalibratedError):
        quantizer.dequantize(np.array([1, 2], dtype=np.int8))
    assert quantizer.stats.quantize_calls == 0
    assert quantizer.last_params is None


def test_calibrate_switches_to_calibrated_and_freezes_parameters(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    params = quantizer.calibrate([f32([[-1.0, 0.5]]), f32([[2.0, 1.0], [0.0, 0.0]])])
    assert quantizer.config.quantization_mode is QuantizationMode.CALIBRATED
    assert params == reference_params(f32([-1.0, 2.0]))
    small = quantizer.quantize(f32([0.1, 0.2]))
    large = quantizer.quantize(f32([10.0, -10.0]))
    assert small.params == params
    assert large.params == params
    np.testing.assert_array_equal(large.data, [127, -128])
    assert large.delta.clipped_values == 2
    exported = quantizer.export_parameters()
    assert exported["is_calibrated"] is True
    assert exported["quantization_mode"] == "CALIBRATED"
    assert exported["calibration"]["batches"] == 2
    assert exported["calibration"]["elements"] == 6
    assert exported["calibration"]["method"] == "MINMAX"


def test_calibrate_per_channel(make_quantizer: MakeQuantizer) -> None:
    x = rows_with_ranges()
    quantizer = make_quantizer(per_channel=True)
    params = quantizer.calibrate([x], channel_dim=1)
    assert params.axis == 1
    assert params.scale.shape == (4,)
    result = quantizer.quantize(x)
    assert result.params == params
    assert quantizer.state.global_params == reference_params(x)


def test_calibrate_errors(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(InputError) as info:
        make_quantizer().calibrate([])
    assert info.value.field == "data"
    with pytest.raises(InputError) as info:
        make_quantizer(quantization_type="FLOAT16").calibrate([f32([1.0])])
    assert info.value.field == "quantization_type"
    with pytest.raises(InputError, match="NaN"):
        make_quantizer().calibrate([f32([1.0, np.nan])])
    lenient = make_quantizer(error_on_nan=False)
    assert lenient.calibrate([f32([1.0, np.nan, -1.0])]) == reference_params(f32([1.0, -1.0]))


# ====================================================================== dequantize and last_params
def test_dequantize_before_any_quantize_is_not_calibrated(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(NotCalibratedError):
        make_quantizer().dequantize(np.array([[1, 2]], dtype=np.int8))


def test_dynamic_dequantize_uses_the_last_quantize(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    x = f32([[-3.0, 0.25, 7.0]])
    codes = quantizer.quantize(x).data
    quantizer.quantize(f32([[100.0, -100.0]]))  # the latest quantize wins
    last = quantizer.last_params
    assert last is not None
    restored = quantizer.dequantize(codes)
    assert restored.params == last
    np.testing.assert_array_equal(restored.data, kernels.dequantize(codes, last))


def test_dequantize_with_last_params_set_by_another_worker(make_quantizer: MakeQuantizer) -> None:
    worker_a = make_quantizer()
    x = f32([[-3.0, 0.25, 7.0]])
    quantized = worker_a.quantize(x)
    worker_b = make_quantizer()
    kept = QParams.of(float(quantized.params.scale), int(quantized.params.zero_point))  # type: ignore[union-attr]
    np.testing.assert_array_equal(worker_b.dequantize(quantized.data, last_params=kept).data,
                                  worker_a.dequantize(quantized.data).data)
    with pytest.raises(NotCalibratedError):  # None says: no quantize yet, whatever this object did
        worker_a.dequantize(quantized.data, last_params=None)
    # per channel too
    per_channel = make_quantizer(per_channel=True)
    result = per_channel.quantize(rows_with_ranges(), channel_dim=-1)
    other = make_quantizer(per_channel=True)
    assert result.params is not None
    kept = QParams.of(result.params.scale.tolist(), result.params.zero_point.tolist(), 1)
    np.testing.assert_array_equal(other.dequantize(result.data, last_params=kept).data,
                                  per_channel.dequantize(result.data).data)


def test_dequantize_input_validation(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    quantizer.quantize(f32([-1.0, 1.0]))
    with pytest.raises(InputError) as info:
        quantizer.dequantize(np.array([0, 200]))
    assert info.value.code == "input.code_out_of_range"
    assert "1 code(s)" in info.value.message
    for bad in (np.array([0.5, 1.0]), np.array([True, False]), np.array([np.nan]), np.array([]), np.array(3)):
        with pytest.raises(InputError):
            quantizer.dequantize(bad)
    # integral floats and wide integer types are codes too
    expected = quantizer.dequantize(np.array([-5, 7], dtype=np.int8)).data
    np.testing.assert_array_equal(quantizer.dequantize(np.array([-5.0, 7.0])).data, expected)
    np.testing.assert_array_equal(quantizer.dequantize(np.array([-5, 7], dtype=np.int64)).data, expected)


def test_dequantize_codes_are_checked_against_num_bits(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(num_bits=4)
    quantizer.quantize(f32([-1.0, 1.0]))
    quantizer.dequantize(np.array([-8, 7]))
    with pytest.raises(InputError):
        quantizer.dequantize(np.array([8]))
    # int8 codes are checked for a 4-bit range (only a dtype that cannot leave the range skips the check)
    with pytest.raises(InputError):
        quantizer.dequantize(np.array([-9, 0], dtype=np.int8))
    uint4 = make_quantizer(quantization_type="UINT8", num_bits=4)
    uint4.dequantize(np.array([0, 15], dtype=np.uint8), scale=0.5, zero_point=3)
    with pytest.raises(InputError):
        uint4.dequantize(np.array([16], dtype=np.uint8), scale=0.5, zero_point=3)


def test_dequantize_every_code_of_a_full_range_dtype(make_quantizer: MakeQuantizer) -> None:
    """int8 codes of INT8 and uint8 codes of UINT8 take no range pass: every code still dequantizes exactly."""
    for qtype, dtype in (("INT8", np.int8), ("UINT8", np.uint8)):
        quantizer = make_quantizer(quantization_type=qtype)
        quantizer.quantize(f32([-3.0, 5.0]))
        params = quantizer.last_params
        assert params is not None
        codes = np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1).astype(dtype)
        expected = ((codes.astype(np.float32) - np.float32(params.zero_point)) * np.float32(params.scale))
        np.testing.assert_array_equal(quantizer.dequantize(codes).data, expected.astype(np.float32))


# ====================================================================== per_channel and channel_dim
def test_per_channel_follows_channel_dim(make_quantizer: MakeQuantizer) -> None:
    x = rows_with_ranges()
    quantizer = make_quantizer(per_channel=True)
    default = quantizer.quantize(x)
    assert default.params is not None
    assert default.params.axis == 0
    last = quantizer.quantize(x, channel_dim=-1)
    assert last.params is not None
    assert last.params.axis == 1
    explicit = quantizer.quantize(x, channel_dim=1)
    np.testing.assert_array_equal(last.data, explicit.data)
    for col in range(4):
        np.testing.assert_array_equal(last.data[:, col], make_quantizer().quantize(x[:, col]).data)


@pytest.mark.parametrize("channel_dim", [2, -3, 7])
def test_channel_dim_out_of_range(make_quantizer: MakeQuantizer, channel_dim: int) -> None:
    x = rows_with_ranges()
    for quantizer in (make_quantizer(per_channel=True), make_quantizer()):
        for call in (quantizer.quantize, quantizer.quantize_dequantize, quantizer.compute_params):
            with pytest.raises(InputError) as info:
                call(x, channel_dim=channel_dim)
            assert info.value.field == "channel_dim"
        quantizer.quantize(x)
        with pytest.raises(InputError) as info:
            quantizer.dequantize(quantizer.quantize(x).data, channel_dim=channel_dim)
        assert info.value.field == "channel_dim"


def test_channel_dim_must_be_an_integer(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(InputError) as info:
        make_quantizer(per_channel=True).quantize(rows_with_ranges(), channel_dim=1.0)  # type: ignore[arg-type]
    assert info.value.field == "channel_dim"


# ====================================================================== compute_params
def test_compute_params_per_tensor_and_per_channel(make_quantizer: MakeQuantizer) -> None:
    x = rows_with_ranges()
    single = make_quantizer().compute_params(x)
    assert single.axis is None
    assert single == reference_params(x)
    lists = make_quantizer(per_channel=True).compute_params(x, channel_dim=1)
    assert lists.axis == 1
    assert lists == QParams.of([reference_params(x[:, c]).scale for c in range(4)],
                               [reference_params(x[:, c]).zero_point for c in range(4)], 1)
    per_batch = make_quantizer(quantization_mode="DYNAMIC_PER_BATCH").compute_params(x)
    assert per_batch.axis == 0
    assert len(per_batch.to_dict()["zero_point"]) == 3


@pytest.mark.parametrize("per_channel", [False, True])
def test_compute_params_with_channel_idx(make_quantizer: MakeQuantizer, per_channel: bool) -> None:
    x = rows_with_ranges()
    quantizer = make_quantizer(per_channel=per_channel)
    assert quantizer.compute_params(x, channel_idx=1) == reference_params(x[1])
    assert quantizer.compute_params(x, channel_idx=-1) == reference_params(x[2])
    assert quantizer.compute_params(x, channel_idx=3, channel_dim=1) == reference_params(x[:, 3])
    assert quantizer.compute_params(x, channel_idx=0, channel_dim=-1) == reference_params(x[:, 0])


@pytest.mark.parametrize(("channel_idx", "channel_dim"), [(3, None), (-4, 0), (4, 1), (True, None), (1.0, None)])
def test_compute_params_channel_idx_out_of_range(make_quantizer: MakeQuantizer, channel_idx: Any,
                                                 channel_dim: int | None) -> None:
    with pytest.raises(InputError) as info:
        make_quantizer().compute_params(rows_with_ranges(), channel_idx=channel_idx, channel_dim=channel_dim)
    assert info.value.field == "channel_idx"


def test_compute_params_changes_nothing(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(per_channel=True)
    before = (quantizer.stats.to_dict(), quantizer.last_params, quantizer.export_parameters(), quantizer.config)
    quantizer.compute_params(rows_with_ranges())
    quantizer.compute_params(rows_with_ranges(), channel_idx=2)
    assert (quantizer.stats.to_dict(), quantizer.last_params, quantizer.export_parameters(), quantizer.config) == before
    with pytest.raises(NotCalibratedError):
        quantizer.dequantize(np.array([[1]], dtype=np.int8))


def test_compute_params_checks_nan_and_identity_types(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(InputError, match="1 NaN"):
        make_quantizer().compute_params(f32([1.0, np.nan]))
    assert make_quantizer(error_on_nan=False).compute_params(f32([1.0, np.nan, -1.0])) == reference_params(
        f32([1.0, -1.0]))
    assert make_quantizer(quantization_type="FLOAT16").compute_params(f32([5.0])) == QParams.identity()


# ====================================================================== validate, NaN and inf
def test_validate_false_skips_nan_errors_and_clip_counting(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    x = f32([-1.0, np.nan, 1.0, np.inf])
    with pytest.raises(InputError):
        quantizer.quantize(x)
    result = quantizer.quantize(x, validate=False)
    zp = int(result.params.zero_point)  # type: ignore[union-attr]
    assert result.data[1] == zp
    assert result.data[3] == 127
    assert result.delta.clipped_values == 0


def test_validate_false_in_static_mode(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_mode="STATIC")
    quantizer.import_parameters({"global_scale": 0.01, "global_zero_point": 5})
    x = f32([-10.0, np.nan, 0.0, 10.0])
    checked = make_quantizer(quantization_mode="STATIC", error_on_nan=False)
    checked.import_parameters({"global_scale": 0.01, "global_zero_point": 5})
    expected = checked.quantize(x)
    assert expected.delta.clipped_values == 3
    result = quantizer.quantize(x, validate=False)
    np.testing.assert_array_equal(result.data, [-128, 5, 5, 127])
    np.testing.assert_array_equal(result.data, expected.data)
    assert result.delta.clipped_values == 0
    fake = quantizer.quantize_dequantize(x, validate=False)
    np.testing.assert_array_equal(fake.data, f32([-133, 0, 0, 122]) * F32(0.01))  # (q - zp) * scale
    # values whose sum overflows, with and without NaN
    np.testing.assert_array_equal(quantizer.quantize(f32([3e38, 3e38, np.nan]), validate=False).data, [127, 127, 5])
    np.testing.assert_array_equal(quantizer.quantize(f32([3e38, 3e38, -1.0]), validate=False).data, [127, 127, -95])


def test_error_on_nan_message_counts(make_quantizer: MakeQuantizer) -> None:
    x = f32([np.nan, 1.0, np.nan, np.nan])
    quantizer = make_quantizer()
    for call in (quantizer.quantize, quantizer.quantize_dequantize):
        with pytest.raises(InputError) as info:
            call(x)
        assert info.value.code == "input.nan"
        assert "3 NaN" in info.value.message
        assert info.value.field == "data"
    assert quantizer.stats.quantize_calls == 0


def test_error_on_inf_message_counts(make_quantizer: MakeQuantizer) -> None:
    x = f32([np.inf, 1.0, -np.inf])
    with pytest.raises(InputError) as info:
        make_quantizer(error_on_nan=False).quantize(x)
    assert info.value.code == "input.inf"
    assert "2 infinite" in info.value.message
    with pytest.raises(InputError, match="1 NaN"):
        make_quantizer(error_on_inf=False).quantize(f32([np.inf, np.nan]))


@pytest.mark.parametrize("qtype", ["INT8", "UINT8", "INT16"])
def test_nan_and_inf_allowed(make_quantizer: MakeQuantizer, qtype: str) -> None:
    quantizer = make_quantizer(quantization_type=qtype, error_on_nan=False, error_on_inf=False)
    x = f32([np.nan, -2.0, np.inf, 3.0, -np.inf, np.nan])
    result = quantizer.quantize(x)
    assert result.params is not None
    expected = reference_params(f32([-2.0, 3.0]), QuantizationType[qtype], QuantizationType[qtype].width)
    assert result.params == expected  # the range of the finite values
    qmin, qmax = qrange(QuantizationType[qtype], QuantizationType[qtype].width)
    zp = int(result.params.zero_point)
    np.testing.assert_array_equal(result.data[[0, 5]], [zp, zp])
    assert result.data[2] == qmax
    assert result.data[4] == qmin
    assert result.delta.clipped_values == 4
    assert quantizer.stats.clipped_values == 4
    fake = quantizer.quantize_dequantize(x)
    assert fake.data[0] == 0.0
    assert np.isfinite(fake.data).all()


def test_float64_beyond_float32_is_infinite(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(InputError, match="1 infinite"):
        make_quantizer().quantize(np.array([1e300, 1.0]))
    result = make_quantizer(error_on_inf=False).quantize(np.array([1e300, 1.0, -1.0]))
    assert result.data[0] == 127


def test_quantize_input_validation(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    for bad in (np.array([]), np.array(1.0), np.array(["a"]), np.array([True]), np.array([1 + 2j])):
        with pytest.raises(InputError) as info:
            quantizer.quantize(bad)
        assert info.value.field == "data"
    assert quantizer.quantize([1, 2, 3]).data.dtype == np.int8  # lists and integers are accepted


# ====================================================================== range options
def test_use_percentile_narrows_the_range(make_quantizer: MakeQuantizer, rng: np.random.Generator) -> None:
    x = heavy_tailed(rng)
    plain = make_quantizer().quantize(x)
    clipped = make_quantizer(use_percentile=True, min_percentile=1.0, max_percentile=99.0).quantize(x)
    assert plain.params is not None
    assert clipped.params is not None
    lo, hi = np.percentile(x, [1.0, 99.0])
    assert float(clipped.params.scale) == pytest.approx((hi - lo) / 255, rel=1e-5)
    assert clipped.params.scale < plain.params.scale / 10
    assert plain.delta.clipped_values <= 8  # at most the outliers at the very ends, by half a step
    assert clipped.delta.clipped_values >= 80


def test_outlier_threshold_clips_the_range(make_quantizer: MakeQuantizer, rng: np.random.Generator) -> None:
    x = heavy_tailed(rng)
    plain = make_quantizer().quantize(x)
    clipped = make_quantizer(outlier_threshold=3.0).quantize(x)
    assert plain.params is not None
    assert clipped.params is not None
    mean, std = float(np.mean(x, dtype=np.float64)), float(np.std(x, dtype=np.float64))
    assert float(clipped.params.scale) == pytest.approx(2 * 3.0 * std / 255, rel=1e-3)
    assert abs(mean) < 0.2
    assert clipped.params.scale < plain.params.scale
    assert clipped.delta.clipped_values > 0
    # a threshold wider than the data changes nothing
    assert make_quantizer(outlier_threshold=1000.0).quantize(x).params == plain.params


def test_requantization_lowers_the_error_on_heavy_tailed_data(make_quantizer: MakeQuantizer,
                                                              rng: np.random.Generator) -> None:
    x = rng.standard_t(3, 4096).astype(F32)
    plain = make_quantizer(num_bits=4).quantize_dequantize(x)
    refined = make_quantizer(num_bits=4, enable_requantization=True).quantize_dequantize(x)
    assert plain.params is not None
    assert refined.params is not None
    assert refined.params.scale < plain.params.scale
    assert rms(refined.data, x) < rms(plain.data, x)
    # a loose threshold is already met: nothing is refined
    loose = make_quantizer(num_bits=4, enable_requantization=True, requantization_threshold=10.0).quantize(x)
    assert loose.params == plain.params


def test_requantization_keeps_well_behaved_data(make_quantizer: MakeQuantizer) -> None:
    x = np.linspace(-1.0, 1.0, 1001, dtype=F32)
    assert make_quantizer(enable_requantization=True).quantize(x).params == make_quantizer().quantize(x).params


def test_num_bits_limits_the_codes(make_quantizer: MakeQuantizer) -> None:
    x = np.linspace(0.0, 5.0, 101, dtype=F32)  # rmin 0 sits on qmin, rmax on qmax
    for qtype, bits in (("INT8", 3), ("UINT8", 5), ("INT16", 12)):
        result = make_quantizer(quantization_type=qtype, num_bits=bits).quantize(x)
        qmin, qmax = qrange(QuantizationType[qtype], bits)
        assert (int(result.data.min()), int(result.data.max())) == (qmin, qmax)
    assert make_quantizer(quantization_type="INT16").quantize(x).data.dtype == np.int16
    assert make_quantizer(quantization_type="UINT8").quantize(x).data.dtype == np.uint8


def test_buffer_size_and_optimize_memory_do_not_change_results(make_quantizer: MakeQuantizer,
                                                               rng: np.random.Generator) -> None:
    x = rng.standard_normal((300, 70)).astype(F32)
    expected = make_quantizer(per_channel=True).quantize_dequantize(x, channel_dim=1).data
    small_blocks = make_quantizer(per_channel=True, buffer_size=1024)
    np.testing.assert_array_equal(small_blocks.quantize_dequantize(x, channel_dim=1).data, expected)
    in_place = make_quantizer(per_channel=True, optimize_memory=True)
    mine = x.copy()
    result = in_place.quantize_dequantize(mine, channel_dim=1).data
    np.testing.assert_array_equal(result, expected)
    assert result is mine  # the caller's buffer holds the answer: no second array was allocated
    kept = x.copy()
    assert make_quantizer(per_channel=True).quantize_dequantize(kept, channel_dim=1).data is not kept
    np.testing.assert_array_equal(kept, x)  # without optimize_memory the input is left alone


# ====================================================================== layers
def test_skip_layers(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(skip_layers=["fc3"])
    x = f32([[0.1234, -5.0]])
    quantizer.quantize(f32([1.0, -1.0]))
    before = quantizer.stats.last_scale
    skipped = quantizer.quantize(x, layer_name="fc3")
    assert skipped.quantization_type is QuantizationType.NONE
    assert skipped.params is None
    assert skipped.data.dtype == np.float32
    np.testing.assert_array_equal(skipped.data, x)
    assert skipped.data is not x
    assert quantizer.stats.last_scale == before
    assert quantizer.quantize(x, layer_name="fc2").data.dtype == np.int8
    np.testing.assert_array_equal(quantizer.dequantize(x, layer_name="fc3").data, x)
    assert quantizer.get_layer_params("fc3")["skip"] is True
    assert quantizer.get_layer_params("fc3")["reason"] == "listed in skip_layers"


def test_quantize_bias(make_quantizer: MakeQuantizer) -> None:
    x = f32([0.5, -0.25])
    assert make_quantizer().quantize(x, layer_name="fc1.bias").data.dtype == np.int8
    no_bias = make_quantizer(quantize_bias=False)
    result = no_bias.quantize(x, layer_name="fc1.Bias")
    assert result.quantization_type is QuantizationType.NONE
    np.testing.assert_array_equal(result.data, x)
    assert no_bias.quantize(x, layer_name="fc1.weight").data.dtype == np.int8
    assert no_bias.quantize(x).data.dtype == np.int8


def test_quantize_weights_only(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantize_weights_only=True)
    x = f32([0.5, -0.25])
    assert quantizer.quantize(x, layer_name="conv1.weight").data.dtype == np.int8
    activations = quantizer.quantize(x, layer_name="relu1")
    assert activations.quantization_type is QuantizationType.NONE
    np.testing.assert_array_equal(activations.data, x)
    assert quantizer.quantize(x).data.dtype == np.int8  # no layer name: the instance's own settings
    assert quantizer.get_layer_params("relu1")["quantization_type"] == "NONE"


def test_mixed_precision_layers(make_quantizer: MakeQuantizer) -> None:
    x = f32([0.1, -3.3])
    half = x.astype(np.float16)
    # listed layers stay at higher precision (FLOAT16) when mixed precision is on
    quantizer = make_quantizer(enable_mixed_precision=True, mixed_precision_layers=["head"])
    result = quantizer.quantize(x, layer_name="head")
    assert result.quantization_type is QuantizationType.FLOAT16
    np.testing.assert_array_equal(result.data, half)
    assert quantizer.quantize(x, layer_name="body").data.dtype == np.int8
    info = quantizer.get_layer_params("head")
    assert (info["quantization_type"], info["num_bits"], info["scale"]) == ("FLOAT16", 16, None)
    # ... and have no effect when it is off
    off = make_quantizer(mixed_precision_layers=["head"])
    assert off.quantize(x, layer_name="head").data.dtype == np.int8


def test_custom_quantization_config(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(enable_mixed_precision=True, custom_quantization_config={
        "wide": {"quantization_type": "INT16", "num_bits": 12},
        "sym": {"symmetric": True},
        "rows": {"per_channel": True},
        "uint": {"quantization_type": "UINT8"},
    })
    x = rows_with_ranges()
    wide = quantizer.quantize(np.abs(x), layer_name="wide")
    assert wide.data.dtype == np.int16
    assert (int(wide.data.min()), int(wide.data.max())) == (-2048, 2047)
    assert quantizer.get_layer_params("wide")["qmax"] == 2047
    sym = quantizer.quantize(x, layer_name="sym")
    assert int(sym.params.zero_point) == 0  # type: ignore[union-attr]
    rows = quantizer.quantize(x, layer_name="rows")
    assert rows.params is not None
    assert rows.params.axis == 0
    uint = quantizer.quantize(x, layer_name="uint")
    assert uint.data.dtype == np.uint8
    assert quantizer.get_layer_params("uint")["num_bits"] == 8
    # dequantize checks codes against the layer's own range
    quantizer.quantize(x, layer_name="wide")
    with pytest.raises(InputError):
        quantizer.dequantize(np.array([3000]), layer_name="wide")
    # without mixed precision the overrides do not apply
    plain = make_quantizer(custom_quantization_config={"wide": {"quantization_type": "INT16"}})
    assert plain.quantize(x, layer_name="wide").data.dtype == np.int8


def test_mixed_type(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_type="MIXED", mixed_precision_layers=["head"], custom_quantization_config={
        "small": {"num_bits": 4}, "wide": {"quantization_type": "INT16"}})
    x = np.linspace(0.0, 1.0, 50, dtype=F32)
    plain = quantizer.quantize(x)
    assert plain.quantization_type is QuantizationType.INT8
    assert plain.data.dtype == np.int8
    small = quantizer.quantize(x, layer_name="small")
    assert (int(small.data.min()), int(small.data.max())) == (-8, 7)
    assert quantizer.quantize(x, layer_name="wide").data.dtype == np.int16
    assert quantizer.get_layer_params("wide")["num_bits"] == 16
    assert quantizer.quantize(x, layer_name="head").data.dtype == np.float16
    assert quantizer.quantize(x, layer_name="other").data.dtype == np.int8
    assert quantizer.export_parameters()["qmin"] == -128


def test_get_layer_params(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(skip_layers=["skip"])
    unknown = quantizer.get_layer_params("never.seen")
    assert unknown == {
        "layer_name": "never.seen", "quantization_type": "INT8", "num_bits": 8, "symmetric": False,
        "per_channel": False, "skip": False, "reason": "instance settings", "qmin": -128, "qmax": 127,
        "scale": None, "zero_point": None, "channel_dim": None, "parameters_source": "dynamic",
        "used_by_quantize": False,
    }
    assert quantizer.get_layer_params("skip")["parameters_source"] == "identity"
    quantizer.import_parameters({"global_scale": 0.5, "global_zero_point": 3,
                                 "layer_params": {"fc": {"scale": [0.25, 0.125], "zero_point": [1, 2],
                                                         "channel_dim": 1}}})
    calibrated = quantizer.get_layer_params("never.seen")
    assert (calibrated["scale"], calibrated["zero_point"], calibrated["parameters_source"]) == (0.5, 3, "global")
    assert calibrated["used_by_quantize"]  # the import switched the instance to CALIBRATED
    layer = quantizer.get_layer_params("fc")
    assert (layer["scale"], layer["zero_point"], layer["channel_dim"], layer["parameters_source"]) == (
        [0.25, 0.125], [1, 2], 1, "layer")


def test_layer_params_are_used_in_parameter_modes(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_mode="STATIC")
    quantizer.import_parameters({"global_scale": 1.0, "global_zero_point": 0,
                                 "layer_params": {"fc": {"scale": 0.5, "zero_point": 2}}})
    x = f32([1.0, -1.0])
    np.testing.assert_array_equal(quantizer.quantize(x).data, [1, -1])
    np.testing.assert_array_equal(quantizer.quantize(x, layer_name="fc").data, [4, 0])
    np.testing.assert_array_equal(quantizer.dequantize(np.array([4, 0]), layer_name="fc").data, x)


# ====================================================================== cache
def test_cache_hits_and_misses(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    codes = quantizer.quantize(f32([[-1.0, 0.3, 2.0]])).data
    first = quantizer.dequantize(codes)
    assert (first.delta.cache_hits, first.delta.cache_misses) == (0, 1)
    second = quantizer.dequantize(codes.copy())
    assert (second.delta.cache_hits, second.delta.cache_misses) == (1, 0)
    np.testing.assert_array_equal(second.data, first.data)
    assert not second.data.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        second.data[0, 0] = 1.0
    assert (quantizer.stats.cache_hits, quantizer.stats.cache_misses) == (1, 1)
    assert quantizer.cache_entries == 1


def test_cache_never_hits_for_different_parameters_shape_or_dtype(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    codes = np.array([[-5, 0, 9]], dtype=np.int8)
    quantizer.quantize(f32([-1.0, 2.0]))
    a = quantizer.dequantize(codes).data
    quantizer.quantize(f32([-3.0, 2.0]))
    b = quantizer.dequantize(codes)
    assert b.delta.cache_misses == 1
    assert not np.array_equal(a, b.data)
    assert quantizer.dequantize(codes.reshape(3, 1)).delta.cache_misses == 1
    assert quantizer.dequantize(codes.astype(np.int32)).delta.cache_misses == 1
    assert quantizer.cache_entries == 4


def test_clear_cache_empties_it(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    codes = quantizer.quantize(f32([-1.0, 2.0])).data
    quantizer.dequantize(codes)
    quantizer.clear_cache()
    assert quantizer.cache_entries == 0
    assert quantizer.dequantize(codes).delta.cache_misses == 1


def test_cache_disabled(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(enable_cache=False)
    codes = quantizer.quantize(f32([-1.0, 2.0])).data
    for _ in range(3):
        result = quantizer.dequantize(codes)
        assert (result.delta.cache_hits, result.delta.cache_misses) == (0, 0)
        assert result.data.flags.writeable
    assert quantizer.cache_entries == 0
    assert (quantizer.stats.cache_hits, quantizer.stats.cache_misses) == (0, 0)


def test_cache_size_bounds_entries_lru(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(cache_size=2)
    quantizer.quantize(f32([-1.0, 2.0]))
    a, b, c = (np.array([k], dtype=np.int8) for k in (1, 2, 3))
    quantizer.dequantize(a)
    quantizer.dequantize(b)
    assert quantizer.dequantize(a).delta.cache_hits == 1  # a is now the most recent
    quantizer.dequantize(c)  # evicts b
    assert quantizer.cache_entries == 2
    assert quantizer.dequantize(a).delta.cache_hits == 1
    assert quantizer.dequantize(b).delta.cache_misses == 1


def test_cache_size_zero_never_caches(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(cache_size=0)
    codes = quantizer.quantize(f32([-1.0, 2.0])).data
    quantizer.dequantize(codes)
    assert quantizer.cache_entries == 0


def test_import_and_calibrate_clear_the_cache(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    codes = quantizer.quantize(f32([-1.0, 2.0])).data
    quantizer.dequantize(codes)
    quantizer.calibrate([f32([-1.0, 2.0])])
    assert quantizer.cache_entries == 0
    quantizer.dequantize(codes)
    quantizer.import_parameters({"global_scale": 0.5, "global_zero_point": 0})
    assert quantizer.cache_entries == 0


# ====================================================================== FLOAT16 and NONE
def test_float16_type(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_type="FLOAT16", quantization_mode="STATIC")
    x = f32([0.1, 70000.0, -1.0])
    result = quantizer.quantize(x)
    assert result.quantization_type is QuantizationType.FLOAT16
    assert result.data.dtype == np.float16
    assert result.params is None
    assert result.data[1] == 65504.0  # saturated at the largest float16, never an infinity in a response
    assert result.delta.clipped_values == 1
    fake = quantizer.quantize_dequantize(x)
    assert fake.data.dtype == np.float32
    np.testing.assert_array_equal(fake.data, f32([np.float16(0.1), 65504.0, -1.0]))
    np.testing.assert_array_equal(quantizer.dequantize(result.data).data, result.data.astype(F32))
    assert quantizer.stats.last_scale == 0.0
    assert quantizer.export_parameters()["qmin"] is None
    with pytest.raises(InputError, match="1 NaN"):
        quantizer.quantize(f32([np.nan]))


def test_none_type_is_identity(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_type="NONE")
    x = f32([0.123456789, -7.5])
    result = quantizer.quantize(x)
    assert result.quantization_type is QuantizationType.NONE
    np.testing.assert_array_equal(result.data, x)
    assert result.data is not x
    np.testing.assert_array_equal(quantizer.dequantize(x).data, x)
    with pytest.raises(ParameterError):
        quantizer.import_parameters({"global_scale": 1.0, "global_zero_point": 0})


# ====================================================================== statistics
def test_stats_before_any_call(make_quantizer: MakeQuantizer) -> None:
    stats = make_quantizer().stats.to_dict()
    assert set(stats) == set(STAT_FIELDS)
    assert stats == dict.fromkeys(STAT_FIELDS, 0) | {"last_scale": 0.0, "last_zero_point": 0.0,
                                                     "processing_time_ms": 0.0}
    assert isinstance(stats["last_scale"], float)


def test_stats_counters_and_deltas(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_mode="STATIC")
    quantizer.import_parameters({"global_scale": 0.1, "global_zero_point": -3})
    x = f32([[0.0, 1.0, 100.0], [-100.0, 2.0, 3.0]])

    q = quantizer.quantize(x)
    assert {k: getattr(q.delta, k) for k in COUNTERS} == {
        "clipped_values": 2, "total_values": 6, "quantize_calls": 1, "dequantize_calls": 0,
        "cache_hits": 0, "cache_misses": 0}
    assert (q.delta.last_scale, q.delta.last_zero_point) == (0.1, -3.0)  # the float32 scale's shortest form
    assert q.delta.processing_time_ms >= 0.0

    qd = quantizer.quantize_dequantize(x)
    assert (qd.delta.quantize_calls, qd.delta.dequantize_calls, qd.delta.total_values) == (1, 1, 6)
    d = quantizer.dequantize(q.data)
    assert (d.delta.quantize_calls, d.delta.dequantize_calls, d.delta.total_values, d.delta.cache_misses) == (
        0, 1, 0, 1)
    quantizer.dequantize(q.data)

    stats = quantizer.stats
    assert {k: getattr(stats, k) for k in COUNTERS} == {
        "clipped_values": 4, "total_values": 12, "quantize_calls": 2, "dequantize_calls": 3,
        "cache_hits": 1, "cache_misses": 1}
    assert (stats.last_scale, stats.last_zero_point) == (0.1, -3.0)
    assert stats.processing_time_ms >= q.delta.processing_time_ms


def test_last_scale_is_channel_zero_per_channel(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(per_channel=True)
    result = quantizer.quantize(rows_with_ranges())
    assert result.params is not None
    assert F32(quantizer.stats.last_scale) == result.params.scale[0]
    assert quantizer.stats.last_zero_point == float(result.params.zero_point[0])


def test_failed_calls_count_nothing(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    with pytest.raises(InputError):
        quantizer.quantize(f32([np.nan]))
    with pytest.raises(NotCalibratedError):
        quantizer.dequantize(np.array([1]))
    assert quantizer.stats.to_dict() == make_quantizer().stats.to_dict()


def test_reset_stats(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    codes = quantizer.quantize(f32([-1.0, 2.0])).data
    quantizer.dequantize(codes)
    quantizer.reset_stats()
    assert quantizer.stats.to_dict() == make_quantizer().stats.to_dict()
    assert quantizer.last_params is not None  # parameters and cache are not statistics
    assert quantizer.dequantize(codes).delta.cache_hits == 1


# ====================================================================== export / import
def calibrated_quantizer(make_quantizer: MakeQuantizer) -> Quantizer:
    quantizer = make_quantizer(per_channel=True, quantization_type="UINT8")
    quantizer.calibrate([rows_with_ranges()], channel_dim=1)
    quantizer.import_parameters({"layer_params": {
        "fc1": {"scale": 0.5, "zero_point": 7},
        "fc2": {"scale": [0.25, 0.125, 2.5], "zero_point": [0, 128, 255], "channel_dim": 0},
    }})
    return quantizer


def test_export_format(make_quantizer: MakeQuantizer) -> None:
    exported = calibrated_quantizer(make_quantizer).export_parameters()
    assert set(exported) == {
        "quantization_type", "quantization_mode", "num_bits", "symmetric", "qmin", "qmax", "is_calibrated",
        "global_scale", "global_zero_point", "per_channel_scales", "per_channel_zero_points", "channel_dim",
        "layer_params", "calibration", "block_scales", "block_zero_points", "block_size", "block_axis"}
    assert (exported["quantization_type"], exported["quantization_mode"], exported["qmin"], exported["qmax"]) == (
        "UINT8", "CALIBRATED", 0, 255)
    assert len(exported["per_channel_scales"]) == 4
    assert exported["channel_dim"] == 1
    assert exported["layer_params"]["fc1"] == {"scale": 0.5, "zero_point": 7, "channel_dim": None}
    np.testing.assert_array_equal(f32(exported["calibration"]["range_min"]), f32([-100.0, 0.0, 0.003, 0.004]))
    fresh = make_quantizer().export_parameters()
    assert (fresh["is_calibrated"], fresh["global_scale"], fresh["per_channel_scales"], fresh["layer_params"],
            fresh["calibration"]) == (False, None, None, {}, None)


def test_export_import_round_trip_is_exact(make_quantizer: MakeQuantizer) -> None:
    source = calibrated_quantizer(make_quantizer)
    exported = source.export_parameters()
    target = make_quantizer(per_channel=True, quantization_type="UINT8")
    target.import_parameters(exported)
    assert target.export_parameters() == exported
    assert target.config == source.config
    x = rows_with_ranges()
    np.testing.assert_array_equal(target.quantize(x).data, source.quantize(x).data)
    np.testing.assert_array_equal(target.quantize(x[:, :3].T, layer_name="fc2").data,
                                  source.quantize(x[:, :3].T, layer_name="fc2").data)
    # importing one's own export changes nothing
    source.import_parameters(exported)
    assert source.export_parameters() == exported


def test_round_trip_keeps_the_exported_mode(make_quantizer: MakeQuantizer) -> None:
    static = make_quantizer(quantization_mode="STATIC")
    static.import_parameters({"global_scale": 0.5, "global_zero_point": 1})
    assert static.config.quantization_mode is QuantizationMode.STATIC  # already a parameter mode: kept
    exported = static.export_parameters()
    target = make_quantizer()
    target.import_parameters(exported)
    assert target.export_parameters() == exported
    # an explicit mode wins over the switch to CALIBRATED
    dynamic = make_quantizer()
    dynamic.import_parameters({"global_scale": 0.5, "global_zero_point": 1, "quantization_mode": "DYNAMIC"})
    assert dynamic.config.quantization_mode is QuantizationMode.DYNAMIC
    assert dynamic.export_parameters()["is_calibrated"] is True
    again = make_quantizer()
    again.import_parameters(dynamic.export_parameters())
    assert again.export_parameters() == dynamic.export_parameters()


def test_import_switches_a_dynamic_instance_to_calibrated(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    quantizer.import_parameters({"global_scale": 0.5, "global_zero_point": 1})
    assert quantizer.config.quantization_mode is QuantizationMode.CALIBRATED
    np.testing.assert_array_equal(quantizer.quantize(f32([1.0, 100.0])).data, [3, 127])


def test_import_a_subset_keeps_the_rest(make_quantizer: MakeQuantizer) -> None:
    quantizer = calibrated_quantizer(make_quantizer)
    before = quantizer.export_parameters()
    quantizer.import_parameters({"global_zero_point": 9})
    after = quantizer.export_parameters()
    assert after["global_zero_point"] == 9
    assert after["global_scale"] == before["global_scale"]
    assert {k: v for k, v in after.items() if k != "global_zero_point"} == {
        k: v for k, v in before.items() if k != "global_zero_point"}
    quantizer.import_parameters({})
    assert quantizer.export_parameters() == after
    quantizer.import_parameters({"channel_dim": 0})
    assert quantizer.export_parameters()["channel_dim"] == 0
    assert quantizer.export_parameters()["per_channel_scales"] == before["per_channel_scales"]


def test_original_service_keys_are_accepted(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer()
    quantizer.import_parameters({
        "global_scale": 0.02, "global_zero_point": -4.0, "per_channel_scales": None, "per_channel_zero_points": None,
        "quantization_type": "INT8", "quantization_mode": "CALIBRATED", "is_calibrated": True,
        "qmin": -128, "qmax": 127,
    })
    exported = quantizer.export_parameters()
    assert (exported["global_scale"], exported["global_zero_point"]) == (0.02, -4)
    assert quantizer.config.quantization_mode is QuantizationMode.CALIBRATED
    np.testing.assert_array_equal(quantizer.quantize(f32([0.2])).data, [6])
    per_channel = make_quantizer(per_channel=True)
    per_channel.import_parameters({"per_channel_scales": [0.5, 0.25], "per_channel_zero_points": [0, 1],
                                   "is_calibrated": True, "quantization_type": "int8"})
    np.testing.assert_array_equal(per_channel.quantize(f32([[1.0, 1.0], [1.0, 1.0]])).data, [[2, 2], [5, 5]])


def test_parameters_given_to_the_constructor() -> None:
    quantizer = Quantizer(parameters={"global_scale": 0.5, "global_zero_point": 0})
    np.testing.assert_array_equal(quantizer.quantize(f32([1.0])).data, [2])


BAD_IMPORTS: list[tuple[dict[str, Any], str]] = [
    ({"bogus": 1}, "bogus"),
    ({"global_scale": 0.5, "global_zero_point": 0, "scale": 1}, "scale"),
    ({"global_scale": -0.5, "global_zero_point": 0}, "global.scale"),
    ({"global_scale": 0.0, "global_zero_point": 0}, "global.scale"),
    ({"global_scale": 1e-50, "global_zero_point": 0}, "global.scale"),
    ({"global_scale": 1e39, "global_zero_point": 0}, "global.scale"),
    ({"global_scale": float("nan"), "global_zero_point": 0}, "global.scale"),
    ({"global_scale": float("inf"), "global_zero_point": 0}, "global.scale"),
    ({"global_scale": "0.5", "global_zero_point": 0}, "global.scale"),
    ({"global_scale": True, "global_zero_point": 0}, "global.scale"),
    ({"global_scale": 0.5, "global_zero_point": 128}, "global.zero_point"),
    ({"global_scale": 0.5, "global_zero_point": -129}, "global.zero_point"),
    ({"global_scale": 0.5, "global_zero_point": 1.5}, "global.zero_point"),
    ({"global_scale": 0.5, "global_zero_point": "1"}, "global.zero_point"),
    ({"global_scale": 0.5, "global_zero_point": False}, "global.zero_point"),
    ({"global_scale": [0.5], "global_zero_point": [0]}, "global_scale"),
    ({"per_channel_scales": [0.5, 0.25], "per_channel_zero_points": [0]}, "per_channel"),
    ({"per_channel_scales": [], "per_channel_zero_points": []}, "per_channel_scales"),
    ({"per_channel_scales": 0.5, "per_channel_zero_points": [0]}, "per_channel_scales"),
    ({"per_channel_scales": [0.5, -1.0], "per_channel_zero_points": [0, 0]}, "per_channel.scale"),
    ({"per_channel_scales": [0.5], "per_channel_zero_points": [300]}, "per_channel.zero_point"),
    ({"per_channel_scales": [0.5]}, "per_channel"),  # against the two zero points already held
    ({"per_channel_scales": [0.5], "per_channel_zero_points": [0], "channel_dim": 9}, "per_channel.channel_dim"),
    ({"per_channel_scales": [0.5], "per_channel_zero_points": [0], "channel_dim": "0"}, "per_channel.channel_dim"),
    ({"quantization_type": "UINT8"}, "quantization_type"),
    ({"quantization_type": "INT4"}, "quantization_type"),
    ({"quantization_mode": "FAST"}, "quantization_mode"),
    ({"num_bits": 4}, "num_bits"),
    ({"num_bits": True}, "num_bits"),
    ({"qmin": 0}, "qmin"),
    ({"qmax": 255}, "qmax"),
    ({"symmetric": True}, "symmetric"),
    ({"is_calibrated": "yes"}, "is_calibrated"),
    ({"layer_params": []}, "layer_params"),
    ({"layer_params": {"fc": {"scale": 0.5}}}, "layer_params"),
    ({"layer_params": {"fc": {"scale": 0.5, "zero_point": 0, "axis": 0}}}, "layer_params"),
    ({"layer_params": {"fc": {"scale": 0.0, "zero_point": 0}}}, "layer_params.fc.scale"),
    ({"layer_params": {"fc": {"scale": [0.5, 0.5], "zero_point": [0]}}}, "layer_params.fc"),
    ({"calibration": [1, 2]}, "calibration"),
]


@pytest.mark.parametrize(("data", "field"), BAD_IMPORTS, ids=[repr(d) for d, _ in BAD_IMPORTS])
def test_invalid_import_changes_nothing(make_quantizer: MakeQuantizer, data: dict[str, Any], field: str) -> None:
    quantizer = make_quantizer(per_channel=True)
    quantizer.import_parameters({"global_scale": 0.25, "global_zero_point": 2, "per_channel_scales": [0.5, 0.125],
                                 "per_channel_zero_points": [1, -1], "layer_params": {"fc0": {"scale": 1.0,
                                                                                               "zero_point": 0}}})
    x = f32([[1.0, 2.0], [3.0, -4.0]])
    codes = quantizer.quantize(x).data
    codes_bytes = codes.tobytes()
    quantizer.dequantize(codes)
    before = (quantizer.export_parameters(), quantizer.config, quantizer.cache_entries)

    with pytest.raises(ParameterError) as info:
        quantizer.import_parameters(data)
    assert info.value.field == field, info.value.message
    assert info.value.code.startswith("parameters.")

    assert (quantizer.export_parameters(), quantizer.config, quantizer.cache_entries) == before
    assert quantizer.quantize(x).data.tobytes() == codes_bytes
    assert quantizer.dequantize(codes).delta.cache_hits == 1


@pytest.mark.parametrize(("data", "field"), [
    ({"global_scale": 0.5}, "global_scale"),
    ({"global_zero_point": 1}, "global_scale"),
    ({"per_channel_scales": [0.5]}, "per_channel_scales"),
    ({"per_channel_zero_points": [1]}, "per_channel_scales"),
    ({"is_calibrated": True}, "is_calibrated"),
    ({"is_calibrated": True, "global_scale": None, "global_zero_point": None}, "is_calibrated"),
], ids=repr)
def test_incomplete_import_into_a_fresh_quantizer(make_quantizer: MakeQuantizer, data: dict[str, Any],
                                                  field: str) -> None:
    quantizer = make_quantizer()
    before = (quantizer.export_parameters(), quantizer.config)
    with pytest.raises(ParameterError) as info:
        quantizer.import_parameters(data)
    assert info.value.field == field
    assert (quantizer.export_parameters(), quantizer.config) == before
    assert quantizer.quantize(f32([1.0, -1.0])).params is not None


def test_unknown_import_key_is_named(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(ParameterError) as info:
        make_quantizer().import_parameters({"global_scale": 1.0, "zero_pointz": 0})
    assert info.value.code == "parameters.unknown_key"
    assert "zero_pointz" in info.value.message


def test_import_is_not_a_mapping(make_quantizer: MakeQuantizer) -> None:
    with pytest.raises(ParameterError):
        make_quantizer().import_parameters([("global_scale", 1.0)])  # type: ignore[arg-type]


def test_imported_channel_count_must_match_the_data(make_quantizer: MakeQuantizer) -> None:
    quantizer = make_quantizer(quantization_mode="STATIC", per_channel=True)
    quantizer.import_parameters({"per_channel_scales": [0.5, 0.5, 0.5], "per_channel_zero_points": [0, 0, 0]})
    with pytest.raises(InputError) as info:
        quantizer.quantize(f32([[1.0, 2.0], [3.0, 4.0]]))
    assert info.value.field == "channel_dim"
    assert quantizer.quantize(f32([[1.0, 2.0, 3.0]]), channel_dim=1).data.shape == (1, 3)
