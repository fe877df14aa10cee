"""Quantizer configuration: the one place where a configuration is validated.

`QuantizationConfig.from_dict` accepts the spec's QuantizerConfigModel fields (plus `calibration_method`),
rejects unknown keys and wrong types with a `ConfigError` naming the field, and `to_dict` writes back exactly
what `from_dict` accepts (type, mode and method as their upper-case names).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError


class QuantizationType(enum.Enum):
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    FLOAT16 = "float16"
    NONE = "none"
    MIXED = "mixed"

    @property
    def is_integer(self) -> bool:
        return self in (QuantizationType.INT8, QuantizationType.UINT8, QuantizationType.INT16)

    @property
    def signed(self) -> bool:
        return self is not QuantizationType.UINT8

    @property
    def width(self) -> int:
        """Bits of the container: the most `num_bits` may be, and the default when it is not given."""
        return {"int8": 8, "uint8": 8, "int16": 16, "float16": 16, "none": 32, "mixed": 8}[self.value]


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


class CalibrationMethod(enum.Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    ENTROPY = "entropy"
    MOVING_AVERAGE = "moving_average"


E = Any  # an enum class


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


@dataclasses.dataclass(frozen=True)
class QuantizationConfig:
    quantization_type: QuantizationType = QuantizationType.INT8
    quantization_mode: QuantizationMode = QuantizationMode.DYNAMIC
    num_bits: int = 8
    symmetric: bool = False
    enable_cache: bool = True
    cache_size: int = 1000
    enable_mixed_precision: bool = False
    per_channel: bool = False
    buffer_size: int = 0
    use_percentile: bool = False
    min_percentile: float = 0.01
    max_percentile: float = 99.99
    error_on_nan: bool = True
    error_on_inf: bool = True
    optimize_memory: bool = False
    enable_requantization: bool = False
    requantization_threshold: float = 0.01
    outlier_threshold: float | None = None
    skip_layers: tuple[str, ...] = ()
    quantize_bias: bool = True
    quantize_weights_only: bool = False
    mixed_precision_layers: tuple[str, ...] = ()
    custom_quantization_config: Mapping[str, LayerOverride] = dataclasses.field(default_factory=dict)
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX

    def __post_init__(self) -> None:
        # Validation runs for direct construction too, so no invalid config can exist.
        _validate(self)

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

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
        return {
            "quantization_type": self.quantization_type.name,
            "quantization_mode": self.quantization_mode.name,
            "num_bits": self.num_bits,
            "symmetric": self.symmetric,
            "enable_cache": self.enable_cache,
            "cache_size": self.cache_size,
            "enable_mixed_precision": self.enable_mixed_precision,
            "per_channel": self.per_channel,
            "buffer_size": self.buffer_size,
            "use_percentile": self.use_percentile,
            "min_percentile": self.min_percentile,
            "max_percentile": self.max_percentile,
            "error_on_nan": self.error_on_nan,
            "error_on_inf": self.error_on_inf,
            "optimize_memory": self.optimize_memory,
            "enable_requantization": self.enable_requantization,
            "requantization_threshold": self.requantization_threshold,
            "outlier_threshold": self.outlier_threshold,
            "skip_layers": list(self.skip_layers),
            "quantize_bias": self.quantize_bias,
            "quantize_weights_only": self.quantize_weights_only,
            "mixed_precision_layers": list(self.mixed_precision_layers),
            "custom_quantization_config": {k: v.to_dict() for k, v in self.custom_quantization_config.items()},
            "calibration_method": self.calibration_method.name,
        }

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


_PARSERS: dict[str, Any] = {
    "quantization_type": lambda v, f: parse_enum(QuantizationType, v, f),
    "quantization_mode": lambda v, f: parse_enum(QuantizationMode, v, f),
    "calibration_method": lambda v, f: parse_enum(CalibrationMethod, v, f),
    "num_bits": _int,
    "cache_size": _int,
    "buffer_size": _int,
    "min_percentile": _float,
    "max_percentile": _float,
    "requantization_threshold": _float,
    "outlier_threshold": _optional_float,
    "skip_layers": _names,
    "mixed_precision_layers": _names,
    "custom_quantization_config": _overrides,
    **{
        name: _bool
        for name in (
            "symmetric", "enable_cache", "enable_mixed_precision", "per_channel", "use_percentile", "error_on_nan",
            "error_on_inf", "optimize_memory", "enable_requantization", "quantize_bias", "quantize_weights_only",
        )
    },
}


def check_bits(qtype: QuantizationType, num_bits: int, field: str = "num_bits", where: str | None = None) -> None:
    """num_bits must fit the type: 2..8 for INT8/UINT8/MIXED, 2..16 for INT16 (and FLOAT16), 2..32 for NONE."""
    if not 2 <= num_bits <= qtype.width:
        raise ConfigError(f"{where or field} must be between 2 and {qtype.width} for {qtype.name}; got {num_bits}",
                          field=field)


def _validate(cfg: QuantizationConfig) -> None:
    for name, parse in _PARSERS.items():
        value = getattr(cfg, name)
        if name == "custom_quantization_config":
            parse(value, name)
        elif name in ("skip_layers", "mixed_precision_layers"):
            parse(list(value), name)
        else:
            parse(value, name)
    check_bits(cfg.quantization_type, cfg.num_bits)
    if cfg.cache_size < 0:
        raise ConfigError(f"cache_size must be >= 0; got {cfg.cache_size}", field="cache_size")
    if cfg.buffer_size < 0:
        raise ConfigError(f"buffer_size must be >= 0; got {cfg.buffer_size}", field="buffer_size")
    for name in ("min_percentile", "max_percentile"):
        if not 0.0 <= getattr(cfg, name) <= 100.0:
            raise ConfigError(f"{name} must be between 0 and 100; got {getattr(cfg, name)}", field=name)
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
