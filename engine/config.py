"""Quantizer configuration: the one place where a configuration is validated.

`QuantizationConfig.from_dict` accepts the spec's QuantizerConfigModel fields (plus `calibration_method`),
rejects unknown keys and wrong types with a `ConfigError` naming the field, and `to_dict` writes back exactly
what `from_dict` accepts (type, mode and method as their upper-case names).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError


class QuantizationType(enum.Enum):
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    FLOAT16 = "float16"
    NONE = "none"
    MIXED = "mixed"
    INT4 = "int4"
    UINT4 = "uint4"
    BFLOAT16 = "bfloat16"
    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"

    @property
    def is_integer(self) -> bool:
        return self in (QuantizationType.INT8, QuantizationType.UINT8, QuantizationType.INT16,
                        QuantizationType.INT4, QuantizationType.UINT4)

    @property
    def is_float8(self) -> bool:
        """FP8_E4M3 (E4M3FN) and FP8_E5M2: a per-tensor / per-channel / per-block scale, no zero point."""
        return self in (QuantizationType.FP8_E4M3, QuantizationType.FP8_E5M2)

    @property
    def is_unsigned(self) -> bool:
        return self in (QuantizationType.UINT8, QuantizationType.UINT4)

    @property
    def width(self) -> int:
        """Bits of the container: the most `num_bits` may be, and the default when it is not given."""
        return {"int8": 8, "uint8": 8, "int16": 16, "float16": 16, "none": 32, "mixed": 8, "int4": 4, "uint4": 4,
                "bfloat16": 16, "fp8_e4m3": 8, "fp8_e5m2": 8}[self.value]


class QuantizationMode(enum.Enum):
    DYNAMIC = "dynamic"
    DYNAMIC_PER_BATCH = "dynamic_per_batch"
    DYNAMIC_PER_CHANNEL = "dynamic_per_channel"
    STATIC = "static"
    CALIBRATED = "calibrated"
    SYMMETRIC = "symmetric"

    @property
    def needs_parameters(self) -> bool:
        """Static and calibrated modes quantize with frozen parameters, never with ones taken from the data."""
        return self in (QuantizationMode.STATIC, QuantizationMode.CALIBRATED)


class QParamsRule(enum.Enum):
    """Whose arithmetic turns a range into a scale and zero point (docs/numerics.md). Member names are lower case:
    they are the configuration's values."""

    onnx = "onnx"  # ONNX DynamicQuantizeLinear, float32, generalised to every type and to symmetric ranges
    ort_tooling = "ort_tooling"  # onnxruntime.quantization.quant_utils.compute_scale_zp (float64)
    torch = "torch"  # PyTorch's MinMaxObserver / PerChannelMinMaxObserver (float32, 2**-23 scale floor)


class CalibrationMethod(enum.Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    ENTROPY = "entropy"
    MOVING_AVERAGE = "moving_average"


def parse_enum(enum_cls: type[enum.Enum], value: object, field: str) -> Any:
    """Accept an enum member, its upper-case name or (for compatibility) its lower-case value."""
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        if value in enum_cls.__members__:
            return enum_cls[value]
        for member in enum_cls:
            if member.value == value:
                return member
    names = ", ".join(enum_cls.__members__)
    raise ConfigError(f"{field} must be one of {names}; got {value!r}", field=field)


LAYER_OVERRIDE_KEYS = ("quantization_type", "num_bits", "symmetric", "per_channel")


@dataclasses.dataclass(frozen=True)
class LayerOverride:
    """Per-layer settings from `custom_quantization_config`; None keeps the instance's own value."""

    quantization_type: QuantizationType | None = None
    num_bits: int | None = None
    symmetric: bool | None = None
    per_channel: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.quantization_type is not None:
            out["quantization_type"] = self.quantization_type.name
        for key in ("num_bits", "symmetric", "per_channel"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _setting(default: Any, help_text: str, *, minimum: float | None = None, maximum: float | None = None) -> Any:
    """A configuration field with its description and bounds: what validation checks and what the API schema and
    the admin show."""
    return dataclasses.field(default=default, metadata={"help": help_text, "minimum": minimum, "maximum": maximum})


@dataclasses.dataclass(frozen=True)
class QuantizationConfig:
    quantization_type: QuantizationType = _setting(
        QuantizationType.INT8, "INT8, UINT8, INT16, INT4, UINT4 (integer codes), FLOAT16, BFLOAT16 (casts), "
        "FP8_E4M3, FP8_E5M2 (scaled float8), NONE (identity) or MIXED (per-layer types); also accepted in lower "
        "case.")
    quantization_mode: QuantizationMode = _setting(
        QuantizationMode.DYNAMIC, "Where the parameters come from: each call's data (DYNAMIC, DYNAMIC_PER_BATCH, "
        "DYNAMIC_PER_CHANNEL, SYMMETRIC) or frozen calibrated/imported ones (STATIC, CALIBRATED).")
    num_bits: int = _setting(8, "Bits of the codes: 2-8 for INT8/UINT8/MIXED, 2-16 for INT16 (FLOAT16), up to 32 "
                                "for NONE; a type given without it gets its own width.", minimum=2, maximum=32)
    symmetric: bool = _setting(False, "Symmetric range around zero (zero point 0 for signed types).")
    enable_cache: bool = _setting(True, "Cache dequantized results (per worker).")
    cache_size: int = _setting(1000, "Entries of the dequantization cache.", minimum=0)
    enable_mixed_precision: bool = _setting(False, "Apply custom_quantization_config and mixed_precision_layers.")
    per_channel: bool = _setting(False, "One scale and zero point per channel along channel_dim.")
    buffer_size: int = _setting(0, "Accepted for compatibility; no effect (the kernels are single-pass).", minimum=0)
    use_percentile: bool = _setting(False, "Dynamic ranges from percentiles instead of min/max.")
    min_percentile: float = _setting(0.01, "Lower percentile of the range when use_percentile is on.", minimum=0,
                                     maximum=100)
    max_percentile: float = _setting(99.99, "Upper percentile of the range when use_percentile is on.", minimum=0,
                                     maximum=100)
    error_on_nan: bool = _setting(True, "Refuse data holding NaN (otherwise NaN gets the zero point's code).")
    error_on_inf: bool = _setting(True, "Refuse data holding infinities (otherwise they saturate).")
    optimize_memory: bool = _setting(False, "Fake quantization overwrites the input buffer (no second array).")
    enable_requantization: bool = _setting(False, "Try narrower clip ranges while the relative RMS error exceeds "
                                                  "requantization_threshold.")
    requantization_threshold: float = _setting(0.01, "Relative RMS error above which requantization tries "
                                                     "narrower ranges.")
    outlier_threshold: float | None = _setting(None, "Clip the range to mean +- t standard deviations (null: off).")
    skip_layers: tuple[str, ...] = _setting((), "Layer names passed through unchanged.")
    quantize_bias: bool = _setting(True, "Quantize layers whose name contains 'bias'.")
    quantize_weights_only: bool = _setting(False, "Pass through layers whose name does not contain 'weight'.")
    mixed_precision_layers: tuple[str, ...] = _setting((), "Layers kept in FLOAT16 when mixed precision applies.")
    custom_quantization_config: Mapping[str, LayerOverride] = dataclasses.field(
        default_factory=dict,
        metadata={"help": "layer name -> {quantization_type, num_bits, symmetric, per_channel}, when mixed "
                          "precision applies."})
    calibration_method: CalibrationMethod = _setting(
        CalibrationMethod.MINMAX, "How calibrate chooses the clip range: MINMAX, PERCENTILE, MSE, ENTROPY or "
        "MOVING_AVERAGE.")
    group_size: int = _setting(0, "Quantize blocks of this many elements along channel_dim (default the last axis), "
                                  "one scale (and zero point) per block, as ONNX's blocked QuantizeLinear; 0: off. "
                                  "Integer and FP8 types, with per_channel false.", minimum=0)
    qparams_rule: QParamsRule = _setting(
        QParamsRule.onnx, "How a range becomes a scale and zero point: onnx (ONNX DynamicQuantizeLinear in float32), "
        "ort_tooling (onnxruntime's compute_scale_zp, float64) or torch (PyTorch's MinMax observers).")

    def __post_init__(self) -> None:
        # Validation runs for direct construction too, so no invalid config can exist.
        _validate(self)

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's description (the API schema and the admin form show these)."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: QuantizationConfig | None = None) -> QuantizationConfig:
        """Build a config from a mapping. Absent keys take `base`'s values (the defaults when base is None)."""
        if not isinstance(data, Mapping):
            raise ConfigError("the configuration must be a JSON object", field=None)
        known = set(cls.field_names())
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ConfigError(f"unknown configuration field: {unknown[0]}", field=unknown[0],
                              code="config.unknown_field")
        start = base if base is not None else cls()
        values: dict[str, Any] = {f: getattr(start, f) for f in known}
        for key, raw in data.items():
            values[key] = _PARSERS[key](raw, key)
        if "quantization_type" in data and "num_bits" not in data:
            # A type given without num_bits gets its own width (8 for INT8/UINT8/MIXED, 16 for INT16/FLOAT16).
            values["num_bits"] = values["quantization_type"].width
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Exactly what from_dict accepts: enums as their names, layer lists as lists."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> QuantizationConfig:
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- field parsers
def _bool(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{field} must be a boolean; got {value!r}", field=field)


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be an integer; got {value!r}", field=field)
    return value


def _float(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{field} must be a number; got {value!r}", field=field)
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"{field} must be finite; got {value!r}", field=field)
    return out


def _optional_float(value: object, field: str) -> float | None:
    return None if value is None else _float(value, field)


def _names(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{field} must be a list of layer names", field=field)
    for item in value:
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{field} must hold non-empty strings; got {item!r}", field=field)
    return tuple(value)


def _overrides(value: object, field: str) -> dict[str, LayerOverride]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field} must be an object mapping layer names to settings", field=field)
    out: dict[str, LayerOverride] = {}
    for layer, settings in value.items():
        where = f"{field}.{layer}"
        if isinstance(settings, LayerOverride):
            out[str(layer)] = settings
            continue
        if not isinstance(layer, str) or not layer or not isinstance(settings, Mapping):
            raise ConfigError(f"{where} must be an object of layer settings", field=field)
        unknown = sorted(str(k) for k in settings if k not in LAYER_OVERRIDE_KEYS)
        if unknown:
            raise ConfigError(f"unknown layer setting {where}.{unknown[0]} (known: {', '.join(LAYER_OVERRIDE_KEYS)})",
                              field=field, code="config.unknown_field")
        qtype, bits, symmetric, per_channel = (settings.get(k) for k in LAYER_OVERRIDE_KEYS)
        try:
            out[layer] = LayerOverride(
                quantization_type=None if qtype is None
                else parse_enum(QuantizationType, qtype, f"{where}.quantization_type"),
                num_bits=None if bits is None else _int(bits, f"{where}.num_bits"),
                symmetric=None if symmetric is None else _bool(symmetric, f"{where}.symmetric"),
                per_channel=None if per_channel is None else _bool(per_channel, f"{where}.per_channel"),
            )
        except ConfigError as exc:
            # The message names the layer setting; `field` stays the configuration field, as for every error.
            raise ConfigError(exc.message, field=field, code=exc.code) from None
    return out


def _parser_for(annotation: Any) -> Callable[[object, str], Any]:
    """The parser of a configuration field, from its type annotation."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return lambda value, field: parse_enum(annotation, value, field)
    by_type: list[tuple[Any, Callable[[object, str], Any]]] = [
        (bool, _bool), (int, _int), (float, _float), (float | None, _optional_float), (tuple[str, ...], _names),
        (Mapping[str, LayerOverride], _overrides),
    ]
    for known, parser in by_type:
        if annotation == known:
            return parser
    raise TypeError(f"no parser for a configuration field of type {annotation!r}")


_PARSERS: dict[str, Callable[[object, str], Any]] = {
    name: _parser_for(annotation)
    for name, annotation in typing.get_type_hints(QuantizationConfig).items()
}


def _plain(value: Any) -> Any:
    """A field's value as JSON: enums by name, tuples as lists, layer overrides as objects."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {key: override.to_dict() for key, override in value.items()}
    return value


def check_bits(qtype: QuantizationType, num_bits: int, field: str = "num_bits", where: str | None = None) -> None:
    """num_bits must fit the type: 2..8 for INT8/UINT8/MIXED, 2..16 for INT16 (and FLOAT16), 2..32 for NONE."""
    if not 2 <= num_bits <= qtype.width:
        raise ConfigError(f"{where or field} must be between 2 and {qtype.width} for {qtype.name}; got {num_bits}",
                          field=field)


def _check_bounds(name: str, value: Any, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}; got {value}", field=name)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum:g}; got {value}", field=name)
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum:g}; got {value}", field=name)


def _validate(cfg: QuantizationConfig) -> None:
    for name, parse in _PARSERS.items():
        parse(getattr(cfg, name), name)
    check_bits(cfg.quantization_type, cfg.num_bits)
    for f in dataclasses.fields(cfg):
        _check_bounds(f.name, getattr(cfg, f.name), f.metadata.get("minimum"), f.metadata.get("maximum"))
    if cfg.group_size:
        if cfg.per_channel:
            raise ConfigError("group_size and per_channel exclude each other: a grouped instance has per_channel "
                              "false", field="group_size")
        if not (cfg.quantization_type.is_integer or cfg.quantization_type.is_float8):
            raise ConfigError(f"group_size applies to integer and FP8 types, not {cfg.quantization_type.name}",
                              field="group_size")
    if cfg.min_percentile >= cfg.max_percentile:
        raise ConfigError("min_percentile must be less than max_percentile", field="min_percentile")
    if cfg.requantization_threshold <= 0:
        raise ConfigError("requantization_threshold must be > 0", field="requantization_threshold")
    if cfg.outlier_threshold is not None and cfg.outlier_threshold <= 0:
        raise ConfigError("outlier_threshold must be > 0 or null", field="outlier_threshold")
    for layer, override in cfg.custom_quantization_config.items():
        if override.quantization_type is QuantizationType.MIXED:
            raise ConfigError(f"custom_quantization_config.{layer}.quantization_type cannot be MIXED",
                              field="custom_quantization_config")
        # Without a type of its own the layer keeps the instance's, which is INT8 for a MIXED instance.
        qtype = override.quantization_type or (
            QuantizationType.INT8 if cfg.quantization_type is QuantizationType.MIXED else cfg.quantization_type)
        if override.num_bits is not None:
            check_bits(qtype, override.num_bits, "custom_quantization_config",
                       f"custom_quantization_config.{layer}.num_bits")
