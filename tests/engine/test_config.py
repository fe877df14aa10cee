"""QuantizationConfig: defaults, (de)serialisation, and a ConfigError naming the field for every invalid value."""

from __future__ import annotations

from typing import Any

import pytest

from engine import (
    CalibrationMethod,
    ConfigError,
    LayerOverride,
    QParamsRule,
    QuantizationConfig,
    QuantizationMode,
    QuantizationType,
)

ISSUE_DEFAULTS: dict[str, Any] = {
    "quantization_type": "INT8",
    "quantization_mode": "DYNAMIC",
    "num_bits": 8,
    "symmetric": False,
    "enable_cache": True,
    "cache_size": 1000,
    "enable_mixed_precision": False,
    "per_channel": False,
    "buffer_size": 0,
    "use_percentile": False,
    "min_percentile": 0.01,
    "max_percentile": 99.99,
    "error_on_nan": True,
    "error_on_inf": True,
    "optimize_memory": False,
    "enable_requantization": False,
    "requantization_threshold": 0.01,
    "outlier_threshold": None,
    "skip_layers": [],
    "quantize_bias": True,
    "quantize_weights_only": False,
    "mixed_precision_layers": [],
    "custom_quantization_config": {},
    "calibration_method": "MINMAX",
    "group_size": 0,
    "qparams_rule": "onnx",
}


def raises_for(field: str, data: dict[str, Any], **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        QuantizationConfig.from_dict(data, **kwargs)
    assert info.value.field == field, info.value.message
    assert field.split(".")[0] in info.value.message
    assert info.value.code.startswith("config.")
    return info.value


# ---------------------------------------------------------------------- defaults
def test_defaults_are_the_issues() -> None:
    assert QuantizationConfig().to_dict() == ISSUE_DEFAULTS
    assert QuantizationConfig.from_dict({}) == QuantizationConfig()


def test_default_enums() -> None:
    config = QuantizationConfig()
    assert config.quantization_type is QuantizationType.INT8
    assert config.quantization_mode is QuantizationMode.DYNAMIC
    assert config.calibration_method is CalibrationMethod.MINMAX
    assert config.skip_layers == ()
    assert config.custom_quantization_config == {}


# ---------------------------------------------------------------------- round trip
FULL: dict[str, Any] = {
    "quantization_type": "MIXED",
    "quantization_mode": "DYNAMIC_PER_CHANNEL",
    "num_bits": 6,
    "symmetric": True,
    "enable_cache": False,
    "cache_size": 7,
    "enable_mixed_precision": True,
    "per_channel": True,
    "buffer_size": 4096,
    "use_percentile": True,
    "min_percentile": 1.5,
    "max_percentile": 98.0,
    "error_on_nan": False,
    "error_on_inf": False,
    "optimize_memory": True,
    "enable_requantization": True,
    "requantization_threshold": 0.05,
    "outlier_threshold": 3.0,
    "skip_layers": ["fc3"],
    "quantize_bias": False,
    "quantize_weights_only": True,
    "mixed_precision_layers": ["head.weight"],
    "custom_quantization_config": {
        "conv1.weight": {"quantization_type": "INT16", "num_bits": 12, "symmetric": False, "per_channel": True},
        "conv2.weight": {"num_bits": 4},
    },
    "calibration_method": "PERCENTILE",
    "qparams_rule": "torch",
}


@pytest.mark.parametrize("data", [{}, FULL, {"quantization_type": "INT16"}, {"quantization_type": "FLOAT16"},
                                  {"quantization_type": "NONE", "quantization_mode": "STATIC"}],
                         ids=["defaults", "every-field", "int16", "float16", "none"])
def test_to_dict_round_trips(data: dict[str, Any]) -> None:
    config = QuantizationConfig.from_dict(data)
    written = config.to_dict()
    assert QuantizationConfig.from_dict(written) == config
    assert QuantizationConfig.from_dict(written).to_dict() == written
    assert set(written) == set(ISSUE_DEFAULTS)


def test_qparams_rule_is_lower_case() -> None:
    """The rule's values (and answers) are lower case; the default is onnx."""
    assert QuantizationConfig().qparams_rule is QParamsRule.onnx
    for name in ("onnx", "ort_tooling", "torch"):
        assert QuantizationConfig.from_dict({"qparams_rule": name}).to_dict()["qparams_rule"] == name
    raises_for("qparams_rule", {"qparams_rule": "tensorflow"})
    raises_for("qparams_rule", {"qparams_rule": 1})


def test_to_dict_writes_upper_case_names() -> None:
    written = QuantizationConfig.from_dict(
        {"quantization_type": "uint8", "quantization_mode": "dynamic_per_batch", "calibration_method": "mse"}
    ).to_dict()
    assert written["quantization_type"] == "UINT8"
    assert written["quantization_mode"] == "DYNAMIC_PER_BATCH"
    assert written["calibration_method"] == "MSE"


def test_every_field_is_read() -> None:
    config = QuantizationConfig.from_dict(FULL)
    written = config.to_dict()
    for key, value in FULL.items():
        if key != "custom_quantization_config":
            assert written[key] == value, key
    assert config.custom_quantization_config["conv1.weight"] == LayerOverride(
        quantization_type=QuantizationType.INT16, num_bits=12, symmetric=False, per_channel=True)
    assert config.custom_quantization_config["conv2.weight"] == LayerOverride(num_bits=4)
    assert written["custom_quantization_config"] == FULL["custom_quantization_config"]


@pytest.mark.parametrize(("raw", "member"), [
    ("INT8", QuantizationType.INT8), ("int8", QuantizationType.INT8), ("UINT8", QuantizationType.UINT8),
    ("uint8", QuantizationType.UINT8), ("int16", QuantizationType.INT16), ("float16", QuantizationType.FLOAT16),
    ("none", QuantizationType.NONE), ("mixed", QuantizationType.MIXED),
    (QuantizationType.INT16, QuantizationType.INT16),
])
def test_type_names_and_values_accepted(raw: Any, member: QuantizationType) -> None:
    assert QuantizationConfig.from_dict({"quantization_type": raw}).quantization_type is member


@pytest.mark.parametrize("mode", list(QuantizationMode))
def test_mode_names_and_values_accepted(mode: QuantizationMode) -> None:
    assert QuantizationConfig.from_dict({"quantization_mode": mode.name}).quantization_mode is mode
    assert QuantizationConfig.from_dict({"quantization_mode": mode.value}).quantization_mode is mode


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_calibration_method_names_and_values_accepted(method: CalibrationMethod) -> None:
    assert QuantizationConfig.from_dict({"calibration_method": method.name}).calibration_method is method
    assert QuantizationConfig.from_dict({"calibration_method": method.value}).calibration_method is method


def test_layer_override_type_accepts_lower_case() -> None:
    config = QuantizationConfig.from_dict({"custom_quantization_config": {"a": {"quantization_type": "int16"}}})
    assert config.custom_quantization_config["a"].quantization_type is QuantizationType.INT16


# ---------------------------------------------------------------------- num_bits and the type's width
@pytest.mark.parametrize(("qtype", "bits"), [("INT8", 8), ("UINT8", 8), ("INT16", 16), ("MIXED", 8),
                                             ("FLOAT16", 16), ("NONE", 32)])
def test_type_without_num_bits_gets_its_own_width(qtype: str, bits: int) -> None:
    assert QuantizationConfig.from_dict({"quantization_type": qtype}).num_bits == bits
    base = QuantizationConfig.from_dict({"num_bits": 4})
    assert QuantizationConfig.from_dict({"quantization_type": qtype}, base=base).num_bits == bits


def test_int16_default_is_16_bits_and_explicit_bits_win() -> None:
    assert QuantizationConfig.from_dict({"quantization_type": "INT16"}).num_bits == 16
    assert QuantizationConfig.from_dict({"quantization_type": "INT16", "num_bits": 12}).num_bits == 12


def test_base_keeps_absent_fields() -> None:
    base = QuantizationConfig.from_dict({"quantization_type": "INT16", "num_bits": 12, "per_channel": True})
    updated = QuantizationConfig.from_dict({"symmetric": True}, base=base)
    assert (updated.quantization_type, updated.num_bits, updated.per_channel, updated.symmetric) == (
        QuantizationType.INT16, 12, True, True)


@pytest.mark.parametrize(("qtype", "good", "bad"), [
    ("INT8", [2, 5, 8], [0, 1, 9, 16, -8]),
    ("UINT8", [2, 8], [1, 9]),
    ("INT16", [2, 9, 16], [1, 17, 32]),
    ("MIXED", [2, 8], [1, 9]),
    ("FLOAT16", [2, 8, 16], [0, 1, 17]),
    ("NONE", [2, 8, 32], [0, 33]),
])
def test_num_bits_range_per_type(qtype: str, good: list[int], bad: list[int]) -> None:
    for bits in good:
        assert QuantizationConfig.from_dict({"quantization_type": qtype, "num_bits": bits}).num_bits == bits
    for bits in bad:
        error = raises_for("num_bits", {"quantization_type": qtype, "num_bits": bits})
        assert str(bits) in error.message


def test_num_bits_checked_against_the_default_type() -> None:
    raises_for("num_bits", {"num_bits": 9})
    raises_for("num_bits", {"num_bits": 12}, base=QuantizationConfig())


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        QuantizationConfig(num_bits=9)
    assert info.value.field == "num_bits"
    with pytest.raises(ConfigError) as info:
        QuantizationConfig(cache_size=-1)
    assert info.value.field == "cache_size"
    with pytest.raises(ConfigError) as info:
        QuantizationConfig().replace(symmetric="yes")
    assert info.value.field == "symmetric"


# ---------------------------------------------------------------------- every error names its field
def test_unknown_key() -> None:
    error = raises_for("bogus", {"bogus": 1, "num_bits": 8})
    assert error.code == "config.unknown_field"
    raises_for("Quantization_Type", {"Quantization_Type": "INT8"})


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError):
        QuantizationConfig.from_dict(["num_bits", 8])  # type: ignore[arg-type]


BOOL_FIELDS = ["symmetric", "enable_cache", "enable_mixed_precision", "per_channel", "use_percentile",
               "error_on_nan", "error_on_inf", "optimize_memory", "enable_requantization", "quantize_bias",
               "quantize_weights_only"]
INT_FIELDS = ["num_bits", "cache_size", "buffer_size"]
FLOAT_FIELDS = ["min_percentile", "max_percentile", "requantization_threshold", "outlier_threshold"]


@pytest.mark.parametrize("field", BOOL_FIELDS)
@pytest.mark.parametrize("value", [1, 0, "true", None, 1.0, []])
def test_bool_fields_reject_non_booleans(field: str, value: Any) -> None:
    raises_for(field, {field: value})


@pytest.mark.parametrize("field", INT_FIELDS)
@pytest.mark.parametrize("value", [True, False, 8.0, "8", None, [8]])
def test_int_fields_reject_non_integers(field: str, value: Any) -> None:
    raises_for(field, {field: value})


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [True, "1.0", [1.0], float("nan"), float("inf")])
def test_float_fields_reject_non_numbers(field: str, value: Any) -> None:
    raises_for(field, {field: value})


@pytest.mark.parametrize("field", ["min_percentile", "max_percentile", "requantization_threshold"])
def test_float_fields_reject_null(field: str) -> None:
    raises_for(field, {field: None})


def test_float_fields_accept_integers() -> None:
    config = QuantizationConfig.from_dict({"min_percentile": 1, "max_percentile": 99, "outlier_threshold": 3})
    assert (config.min_percentile, config.max_percentile, config.outlier_threshold) == (1.0, 99.0, 3.0)
    assert QuantizationConfig.from_dict({"outlier_threshold": None}).outlier_threshold is None


@pytest.mark.parametrize("field", ["quantization_type", "quantization_mode", "calibration_method"])
@pytest.mark.parametrize("value", ["bogus", "Int8", "", None, 8, True])
def test_enum_fields_reject_unknown_names(field: str, value: Any) -> None:
    raises_for(field, {field: value})


def test_enum_error_lists_the_names() -> None:
    error = raises_for("quantization_type", {"quantization_type": "INT3"})
    assert "INT8" in error.message
    assert "INT4" in error.message


@pytest.mark.parametrize(("data", "field"), [
    ({"min_percentile": -0.1}, "min_percentile"),
    ({"min_percentile": 100.5}, "min_percentile"),
    ({"max_percentile": 100.01}, "max_percentile"),
    ({"max_percentile": -1}, "max_percentile"),
    ({"min_percentile": 50, "max_percentile": 50}, "min_percentile"),
    ({"min_percentile": 60, "max_percentile": 40}, "min_percentile"),
    ({"max_percentile": 0.005}, "min_percentile"),
])
def test_percentiles_out_of_range_or_crossed(data: dict[str, Any], field: str) -> None:
    raises_for(field, data)


def test_percentile_bounds_accepted() -> None:
    config = QuantizationConfig.from_dict({"min_percentile": 0, "max_percentile": 100})
    assert (config.min_percentile, config.max_percentile) == (0.0, 100.0)


@pytest.mark.parametrize("field", ["cache_size", "buffer_size"])
def test_negative_sizes(field: str) -> None:
    raises_for(field, {field: -1})
    assert getattr(QuantizationConfig.from_dict({field: 0}), field) == 0


@pytest.mark.parametrize(("data", "field"), [
    ({"requantization_threshold": 0}, "requantization_threshold"),
    ({"requantization_threshold": -0.5}, "requantization_threshold"),
    ({"outlier_threshold": 0}, "outlier_threshold"),
    ({"outlier_threshold": -2}, "outlier_threshold"),
])
def test_thresholds_must_be_positive(data: dict[str, Any], field: str) -> None:
    raises_for(field, data)


@pytest.mark.parametrize("field", ["skip_layers", "mixed_precision_layers"])
@pytest.mark.parametrize("value", ["fc1", {"fc1": True}, [1], [""], [None], None, [["fc1"]]])
def test_layer_lists_reject_bad_values(field: str, value: Any) -> None:
    raises_for(field, {field: value})


@pytest.mark.parametrize("value", [
    [],
    "conv1",
    None,
    {"conv1": "INT8"},
    {"conv1": {"bits": 4}},
    {"conv1": {"quantization_type": "INT3"}},
    {"conv1": {"quantization_type": "MIXED"}},
    {"conv1": {"num_bits": 9}},
    {"conv1": {"quantization_type": "INT16", "num_bits": 17}},
    {"conv1": {"num_bits": "4"}},
    {"conv1": {"num_bits": True}},
    {"conv1": {"symmetric": 1}},
    {"conv1": {"per_channel": "yes"}},
    {"": {"num_bits": 4}},
], ids=repr)
def test_bad_custom_quantization_config(value: Any) -> None:
    error = raises_for("custom_quantization_config", {"custom_quantization_config": value})
    if isinstance(value, dict) and "conv1" in value:
        assert "conv1" in error.message


def test_unknown_layer_setting_is_an_unknown_field() -> None:
    error = raises_for("custom_quantization_config", {"custom_quantization_config": {"conv1": {"bits": 4}}})
    assert error.code == "config.unknown_field"
    assert "bits" in error.message


def test_custom_layer_bits_checked_against_the_layer_type() -> None:
    # INT16 overrides may use up to 16 bits on an INT8 instance; plain overrides are bounded by the instance's type
    ok = QuantizationConfig.from_dict({"custom_quantization_config": {"a": {"quantization_type": "INT16",
                                                                             "num_bits": 12}}})
    assert ok.custom_quantization_config["a"].num_bits == 12
    raises_for("custom_quantization_config", {"custom_quantization_config": {"a": {"num_bits": 12}}})
    int16 = QuantizationConfig.from_dict({"quantization_type": "INT16",
                                          "custom_quantization_config": {"a": {"num_bits": 12}}})
    assert int16.custom_quantization_config["a"].num_bits == 12


def test_mixed_instance_accepts_overrides_without_a_type() -> None:
    """A MIXED instance quantizes unlisted layers as INT8, so an override naming only bits / symmetry / per_channel
    is an INT8 override."""
    config = QuantizationConfig.from_dict({
        "quantization_type": "MIXED",
        "custom_quantization_config": {"a": {"num_bits": 4}, "b": {"symmetric": True}, "c": {"per_channel": True}},
    })
    assert config.custom_quantization_config["a"].num_bits == 4
    raises_for("custom_quantization_config",
               {"quantization_type": "MIXED", "custom_quantization_config": {"a": {"num_bits": 9}}})


def test_error_message_and_code_are_stable() -> None:
    error = raises_for("num_bits", {"num_bits": 1})
    assert error.code == "config.invalid"
    assert str(error) == error.message


def test_every_field_round_trips_and_has_a_description() -> None:
    """to_dict and the parsers derive from the dataclass: a new field gets both, and a description."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(QuantizationConfig)]
    assert list(QuantizationConfig().to_dict()) == names
    changed = QuantizationConfig.from_dict({"skip_layers": ["a"], "outlier_threshold": 2.5,
                                            "custom_quantization_config": {"x": {"num_bits": 4}}})
    assert QuantizationConfig.from_dict(changed.to_dict()) == changed
    assert all(QuantizationConfig.field_help()[name] for name in names)
