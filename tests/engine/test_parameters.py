"""Stored parameters: the one rule that picks them, explicit request parameters, and restoring stored state."""

from __future__ import annotations

import numpy as np
import pytest

from engine import InputError, NotCalibratedError, ParameterError, QuantizationConfig, QuantizationMode, Quantizer

F32 = np.float32
PER_CHANNEL_IMPORT = {"per_channel_scales": [0.1, 0.2], "per_channel_zero_points": [0, 0], "channel_dim": 0}


def reference_codes(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray) -> np.ndarray:
    """ONNX QuantizeLinear to INT8 in plain numpy: float32 division, round half to even, saturate."""
    return np.clip(np.rint(x.astype(F32) / scale.astype(F32)) + zero_point, -128, 127).astype(np.int8)


def test_layer_params_reports_the_per_channel_parameters_quantize_uses() -> None:
    """A STATIC instance whose config is per tensor but which holds imported per-channel parameters: quantize uses
    them, and layer_params says so through the same rule (it used to report a dynamic layer with scale null)."""
    quantizer = Quantizer(QuantizationConfig(quantization_mode=QuantizationMode.STATIC))
    quantizer.import_parameters(PER_CHANNEL_IMPORT)
    x = np.ones((2, 2), F32)
    codes = quantizer.quantize(x).data
    np.testing.assert_array_equal(codes, reference_codes(x, np.array([[0.1], [0.2]], F32), np.zeros((2, 1))))
    np.testing.assert_array_equal(codes, [[10, 10], [5, 5]])
    report = quantizer.get_layer_params("any.layer")
    assert (report["scale"], report["zero_point"], report["channel_dim"]) == ([0.1, 0.2], [0, 0], 0)
    assert report["parameters_source"] == "per_channel"
    assert report["used_by_quantize"] is True


def test_layer_params_in_a_dynamic_mode_are_reported_as_not_used() -> None:
    quantizer = Quantizer(QuantizationConfig())
    quantizer.import_parameters({**PER_CHANNEL_IMPORT, "quantization_mode": "DYNAMIC"})
    report = quantizer.get_layer_params("w")
    assert report["scale"] == [0.1, 0.2]
    assert report["used_by_quantize"] is False


def test_restore_keeps_the_stored_mode_where_an_import_would_switch_it() -> None:
    calibrated = Quantizer(QuantizationConfig())
    calibrated.calibrate([np.array([[-1.0, 2.0]], F32)])
    stored = {k: v for k, v in calibrated.export_parameters().items()}
    dynamic = QuantizationConfig()  # the instance was switched back to DYNAMIC after calibrating
    state_keys = ("is_calibrated", "global_scale", "global_zero_point", "per_channel_scales",
                  "per_channel_zero_points", "channel_dim", "layer_params", "calibration")
    restored = Quantizer.restore(dynamic, {k: stored[k] for k in state_keys})
    assert restored.config.quantization_mode is QuantizationMode.DYNAMIC
    assert restored.export_parameters()["global_scale"] == stored["global_scale"]
    imported = Quantizer(dynamic, parameters={k: stored[k] for k in state_keys})
    assert imported.config.quantization_mode is QuantizationMode.CALIBRATED


@pytest.mark.parametrize("per_channel", [False, True])
def test_dequantize_with_explicit_parameters_wins_over_the_latest_quantize(per_channel: bool) -> None:
    quantizer = Quantizer(QuantizationConfig(per_channel=per_channel))
    codes = np.array([[-128, 0, 127], [5, -5, 1]], np.int8)
    quantizer.quantize(np.array([[100.0, -3.0, 0.5], [1.0, 2.0, 3.0]], F32))  # someone else's quantize
    if per_channel:
        scale, zero_point = [0.5, 0.25], [1, -2]
        out = quantizer.dequantize(codes, scale=scale, zero_point=zero_point, channel_dim=0).data
        expected = ((codes.astype(np.int64) - np.array([[1], [-2]])) * np.array([[0.5], [0.25]], F32)).astype(F32)
    else:
        out = quantizer.dequantize(codes, scale=0.5, zero_point=3).data
        expected = ((codes.astype(np.int64) - 3) * F32(0.5)).astype(F32)
    np.testing.assert_array_equal(out, expected)


def test_explicit_zero_point_defaults_to_zero_and_bad_parameters_are_refused() -> None:
    quantizer = Quantizer(QuantizationConfig(quantization_mode=QuantizationMode.STATIC))
    codes = np.array([[2, -4]], np.int8)
    np.testing.assert_array_equal(quantizer.dequantize(codes, scale=0.5).data, [[1.0, -2.0]])
    with pytest.raises(NotCalibratedError):
        quantizer.dequantize(codes)  # nothing stored, nothing given
    for kwargs, field in [({"zero_point": 1}, "scale"), ({"scale": -1.0}, "scale"), ({"scale": 1.0, "zero_point": 300},
                          "zero_point"), ({"scale": [1.0], "zero_point": 0}, "zero_point")]:
        with pytest.raises(ParameterError) as refused:
            quantizer.dequantize(codes, **kwargs)
        assert refused.value.field == field
    with pytest.raises(InputError, match="channels"):
        quantizer.dequantize(codes, scale=[1.0, 2.0, 3.0], channel_dim=1)


@pytest.mark.parametrize(("config", "call"), [
    ({}, "quantize"), ({}, "quantize_dequantize"), ({"quantization_type": "FLOAT16"}, "quantize"),
    ({"quantization_mode": "DYNAMIC_PER_BATCH"}, "quantize"), ({}, "compute_params"), ({}, "calibrate"),
])
def test_channel_dim_is_refused_where_nothing_is_per_channel(config: dict[str, object], call: str) -> None:
    quantizer = Quantizer(QuantizationConfig.from_dict(config))
    x = np.array([[1.0, -2.0], [3.0, 4.0]], F32)
    run = getattr(quantizer, call)
    with pytest.raises(InputError) as refused:
        run([x] if call == "calibrate" else x, channel_dim=1)
    assert (refused.value.code, refused.value.field) == ("input.channel_dim", "channel_dim")


def test_channel_dim_is_accepted_where_something_is_per_channel() -> None:
    x = np.array([[1.0, -2.0], [3.0, 4.0]], F32)
    assert Quantizer(QuantizationConfig(per_channel=True)).quantize(x, channel_dim=1).params.axis == 1  # type: ignore[union-attr]
    per_channel_mode = Quantizer(QuantizationConfig(quantization_mode=QuantizationMode.DYNAMIC_PER_CHANNEL))
    assert per_channel_mode.quantize(x, channel_dim=1).params.axis == 1  # type: ignore[union-attr]
    static = Quantizer(QuantizationConfig(quantization_mode=QuantizationMode.STATIC), parameters=PER_CHANNEL_IMPORT)
    assert static.quantize(x, channel_dim=1).params.axis == 1  # type: ignore[union-attr]
    assert Quantizer().compute_params(x, channel_idx=1, channel_dim=1).axis is None


def test_the_export_holds_exactly_the_known_keys() -> None:
    """Import takes what export writes, and the web layer stores the state keys: one list of keys."""
    from engine.parameters import IDENTITY_KEYS, KNOWN_KEYS, STATE_KEYS

    exported = Quantizer(QuantizationConfig()).export_parameters()
    assert tuple(exported) == KNOWN_KEYS == IDENTITY_KEYS + STATE_KEYS
