"""Stored quantization parameters: the state, its export, and a validating import.

Export format (every key optional on import; absent keys keep their current values):
    quantization_type, quantization_mode, num_bits, symmetric, qmin, qmax   (must agree with the instance; mode
                                                                            is applied)
    is_calibrated                bool
    global_scale, global_zero_point                     per-tensor parameters
    per_channel_scales, per_channel_zero_points, channel_dim   per-channel parameters
    block_scales, block_zero_points, block_size, block_axis    per-block parameters (grouped instances): nested
                                                 lists shaped like ONNX's scale initializer (the data's shape
                                                 with ceil(dim / block_size) along block_axis)
    layer_params                 {layer: {"scale": s | [s...], "zero_point": z | [z...], "channel_dim": int|null}}
    calibration                  {method, batches, elements, range_min, range_max, histogram} or null (histogram:
                                 {counts, first_edge, bin_width}, 64 bins of all calibration values)
These are the original service's keys plus channel_dim, layer_params and calibration, so its exports import.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import QuantizationConfig, QuantizationMode, QuantizationType, parse_enum
from .errors import ConfigError, ParameterError
from .layers import LayerPlan, resolve_layer
from .qparams import QParams, f32_float, qrange

F32_MAX = float(np.finfo(np.float32).max)

# What describes the instance (checked against it on import) and what is stored state (persisted as is).
IDENTITY_KEYS = ("quantization_type", "quantization_mode", "num_bits", "symmetric", "qmin", "qmax")
STATE_KEYS = ("is_calibrated", "global_scale", "global_zero_point", "per_channel_scales", "per_channel_zero_points",
              "channel_dim", "layer_params", "calibration", "block_scales", "block_zero_points", "block_size",
              "block_axis")
KNOWN_KEYS = IDENTITY_KEYS + STATE_KEYS


@dataclasses.dataclass
class ParameterState:
    is_calibrated: bool = False
    global_params: QParams | None = None
    channel_params: QParams | None = None
    layer_params: dict[str, QParams] = dataclasses.field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    block_params: QParams | None = None


def export_state(state: ParameterState, config: QuantizationConfig) -> dict[str, Any]:
    plan = resolve_layer(config, None)
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits) if plan.quantization_type.is_integer else (None, None)
    g = state.global_params
    c = state.channel_params
    b = state.block_params
    blocks = None if b is None else b.to_dict()
    return {
        "quantization_type": config.quantization_type.name,
        "quantization_mode": config.quantization_mode.name,
        "num_bits": config.num_bits,
        "symmetric": config.symmetric,
        "qmin": qmin,
        "qmax": qmax,
        "is_calibrated": state.is_calibrated,
        "global_scale": None if g is None else f32_float(g.scale),
        "global_zero_point": None if g is None else int(g.zero_point),
        "per_channel_scales": None if c is None else [f32_float(s) for s in c.scale],
        "per_channel_zero_points": None if c is None else [int(z) for z in c.zero_point],
        "channel_dim": None if c is None else c.axis,
        "layer_params": {
            name: {"scale": p.to_dict()["scale"], "zero_point": p.to_dict()["zero_point"], "channel_dim": p.axis}
            for name, p in state.layer_params.items()
        },
        "calibration": state.calibration,
        "block_scales": None if blocks is None else blocks["scale"],
        "block_zero_points": None if blocks is None else blocks["zero_point"],
        "block_size": None if blocks is None else blocks["block_size"],
        "block_axis": None if blocks is None else blocks["axis"],
    }


# ---------------------------------------------------------------------- import validation
def _scale(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{key} must be a number; got {value!r}", field=key)
    v = float(value)
    if not (math.isfinite(v) and 0.0 < v <= F32_MAX) or np.float32(v) == 0:
        raise ParameterError(f"{key} must be a finite positive float32 number; got {value!r}", field=key)
    return v


def _zero_point(value: Any, key: str, qmin: int, qmax: int) -> int:
    if isinstance(value, bool):
        raise ParameterError(f"{key} must be an integer; got {value!r}", field=key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # the spec's JSON types zero points as floats
    if not isinstance(value, int):
        raise ParameterError(f"{key} must be an integer; got {value!r}", field=key)
    if not qmin <= value <= qmax:
        raise ParameterError(f"{key} {value} is outside the type's range [{qmin}, {qmax}]", field=key)
    return value


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ParameterError(f"{key} must be a non-empty list", field=key)
    return value


def _channel_dim(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -4 <= value < 4:
        raise ParameterError(f"{key} must be an integer axis between -4 and 3; got {value!r}", field=key)
    return value


def _params(scale: Any, zp: Any, axis: Any, key: str, qmin: int, qmax: int) -> QParams:
    if isinstance(scale, list) or isinstance(zp, list):
        scales = [_scale(s, f"{key}.scale") for s in _list(scale, f"{key}.scale")]
        zps = [_zero_point(z, f"{key}.zero_point", qmin, qmax) for z in _list(zp, f"{key}.zero_point")]
        if len(scales) != len(zps):
            raise ParameterError(f"{key}: {len(scales)} scales but {len(zps)} zero points", field=key)
        return QParams.of(scales, zps, 0 if axis is None else _channel_dim(axis, f"{key}.channel_dim"))
    return QParams.of(_scale(scale, f"{key}.scale"), _zero_point(zp, f"{key}.zero_point", qmin, qmax), None)


def import_state(
    data: Mapping[str, Any], state: ParameterState, config: QuantizationConfig
) -> tuple[ParameterState, QuantizationConfig]:
    """Validate `data` completely and return the new (state, config); raise ParameterError and change nothing."""
    mode = _check_identity(data, config)
    new = parse_state(data, state, config)
    return new, _mode_after_import(data, new, config, mode)


def parse_state(data: Mapping[str, Any], state: ParameterState, config: QuantizationConfig) -> ParameterState:
    """The state `data` describes, on top of `state` (absent keys keep their values); the config is not changed.
    Also how stored parameters are restored, since their config already holds the mode they were stored with."""
    _check_keys(data)
    plan = resolve_layer(config, None)
    scaled = plan.quantization_type.is_integer or plan.quantization_type.is_float8
    if not scaled and any(data.get(k) is not None for k in ("global_scale", "per_channel_scales", "block_scales")):
        raise ParameterError(f"a {config.quantization_type.name} instance has no scale or zero point",
                             field="global_scale")
    # float8 has no zero point: only 0 is accepted
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits) if plan.quantization_type.is_integer else (0, 0)
    new = dataclasses.replace(state, layer_params=dict(state.layer_params))
    if "global_scale" in data or "global_zero_point" in data:
        new.global_params = _import_global(data, state.global_params, qmin, qmax)
    if any(k in data for k in ("per_channel_scales", "per_channel_zero_points", "channel_dim")):
        new.channel_params = _import_channel(data, state.channel_params, qmin, qmax)
    if any(k in data for k in ("block_scales", "block_zero_points", "block_size", "block_axis")):
        new.block_params = _import_blocks(data, qmin, qmax)
    if data.get("layer_params") is not None:
        new.layer_params.update(_import_layers(data["layer_params"], config))
    if "calibration" in data:
        cal = data["calibration"]
        if cal is not None and not isinstance(cal, Mapping):
            raise ParameterError("calibration must be an object or null", field="calibration")
        new.calibration = None if cal is None else dict(cal)
    has_params = (new.global_params is not None or new.channel_params is not None or bool(new.layer_params)
                  or new.block_params is not None)
    if data.get("is_calibrated") is not None:
        if not isinstance(data["is_calibrated"], bool):
            raise ParameterError("is_calibrated must be a boolean", field="is_calibrated")
        if data["is_calibrated"] and not has_params:
            raise ParameterError("is_calibrated is true but no parameters are given", field="is_calibrated")
        new.is_calibrated = data["is_calibrated"]
    elif any(k in data for k in ("global_scale", "per_channel_scales", "layer_params", "block_scales")):
        new.is_calibrated = has_params
    return new


def _check_keys(data: Any) -> None:
    if not isinstance(data, Mapping):
        raise ParameterError("parameters must be a JSON object", field="parameters")
    unknown = sorted(str(k) for k in data if k not in KNOWN_KEYS)
    if unknown:
        raise ParameterError(f"unknown parameter key: {unknown[0]}", field=unknown[0], code="parameters.unknown_key")


def _check_identity(data: Mapping[str, Any], config: QuantizationConfig) -> QuantizationMode | None:
    """The keys that describe the instance (type, bits, range, symmetry) must agree with it; returns the mode
    the data asks for, if any."""
    _check_keys(data)
    plan = resolve_layer(config, None)
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits) if plan.quantization_type.is_integer else (0, 0)
    try:
        if data.get("quantization_type") is not None:
            qt = parse_enum(QuantizationType, data["quantization_type"], "quantization_type")
            if qt is not config.quantization_type:
                raise ParameterError(f"the parameters are for {qt.name} but the instance is "
                                     f"{config.quantization_type.name}", field="quantization_type")
        mode = (parse_enum(QuantizationMode, data["quantization_mode"], "quantization_mode")
                if data.get("quantization_mode") is not None else None)
    except ConfigError as exc:
        raise ParameterError(exc.message, field=exc.field) from exc
    for key, expected in (("num_bits", config.num_bits), ("qmin", qmin), ("qmax", qmax)):
        if data.get(key) is not None and (isinstance(data[key], bool) or data[key] != expected):
            raise ParameterError(f"{key} {data[key]!r} does not match the instance ({expected})", field=key)
    if data.get("symmetric") is not None and data["symmetric"] is not config.symmetric:
        raise ParameterError(f"symmetric {data['symmetric']!r} does not match the instance", field="symmetric")
    return mode


def _import_global(data: Mapping[str, Any], current: QParams | None, qmin: int, qmax: int) -> QParams | None:
    if data.get("global_scale") is None and data.get("global_zero_point") is None:
        return None
    scale = data.get("global_scale", None if current is None else float(current.scale))
    zp = data.get("global_zero_point", None if current is None else int(current.zero_point))
    if scale is None or zp is None:
        raise ParameterError("global_scale and global_zero_point go together", field="global_scale")
    if isinstance(scale, list) or isinstance(zp, list):
        raise ParameterError("global_scale and global_zero_point must be single numbers", field="global_scale")
    return _params(scale, zp, None, "global", qmin, qmax)


def _import_channel(data: Mapping[str, Any], current: QParams | None, qmin: int, qmax: int) -> QParams | None:
    scales = data.get("per_channel_scales", None if current is None else [float(s) for s in current.scale])
    zps = data.get("per_channel_zero_points", None if current is None else [int(z) for z in current.zero_point])
    axis = data.get("channel_dim", None if current is None else current.axis)
    if scales is None and zps is None:
        return None
    if scales is None or zps is None:
        raise ParameterError("per_channel_scales and per_channel_zero_points go together", field="per_channel_scales")
    return _params(_list(scales, "per_channel_scales"), _list(zps, "per_channel_zero_points"), axis, "per_channel",
                   qmin, qmax)


def _import_blocks(data: Mapping[str, Any], qmin: int, qmax: int) -> QParams | None:
    """block_scales / block_zero_points (nested lists of one shape), block_size (> 0) and block_axis; all four
    null clears them."""
    keys = ("block_scales", "block_zero_points", "block_size", "block_axis")
    values = [data.get(k) for k in keys]
    if all(v is None for v in values):
        return None
    missing = [k for k, v in zip(keys, values, strict=True) if v is None]
    if missing:
        raise ParameterError(f"block parameters need {', '.join(keys)}; {missing[0]} is missing", field=missing[0])
    scales, zps, size, axis = values
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ParameterError(f"block_size must be a positive integer; got {size!r}", field="block_size")
    axis = _channel_dim(axis, "block_axis")
    try:
        s_arr = np.asarray(scales, dtype=np.float64)
        z_arr = np.asarray(zps, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError("block_scales and block_zero_points must be nested lists of numbers",
                             field="block_scales") from None
    if s_arr.ndim == 0 or s_arr.size == 0 or s_arr.shape != z_arr.shape:
        raise ParameterError(f"block_scales {list(s_arr.shape)} and block_zero_points {list(z_arr.shape)} must be "
                             "non-empty nested lists of one shape", field="block_scales")
    if not -s_arr.ndim <= axis < s_arr.ndim:
        raise ParameterError(f"block_axis {axis} is out of range for {s_arr.ndim}-dimensional block parameters",
                             field="block_axis")
    if not (np.all(np.isfinite(s_arr)) and np.all(s_arr > 0) and np.all(s_arr <= F32_MAX)
            and np.all(s_arr.astype(np.float32) > 0)):
        raise ParameterError("block_scales must be finite positive float32 numbers", field="block_scales")
    if not np.array_equal(z_arr, np.rint(z_arr)) or np.any(z_arr < qmin) or np.any(z_arr > qmax):
        raise ParameterError(f"block_zero_points must be integers in the type's range [{qmin}, {qmax}]",
                             field="block_zero_points")
    return QParams.of(s_arr, z_arr.astype(np.int64), axis % s_arr.ndim, size)


def _import_layers(layers: Any, config: QuantizationConfig) -> dict[str, QParams]:
    if not isinstance(layers, Mapping):
        raise ParameterError("layer_params must be an object of layer name -> parameters", field="layer_params")
    out: dict[str, QParams] = {}
    for name, entry in layers.items():
        key = f"layer_params.{name}"
        if not isinstance(name, str) or not name or not isinstance(entry, Mapping):
            raise ParameterError(f"{key} must be an object with scale and zero_point", field="layer_params")
        extra = sorted(set(entry) - {"scale", "zero_point", "channel_dim"})
        if extra or "scale" not in entry or "zero_point" not in entry:
            raise ParameterError(f"{key} must hold scale, zero_point and optionally channel_dim", field="layer_params")
        lplan = resolve_layer(config, name)
        if not lplan.effective_type.is_integer:
            raise ParameterError(f"layer {name} is {lplan.effective_type.name}: it takes no parameters",
                                 field="layer_params")
        lmin, lmax = qrange(lplan.quantization_type, lplan.num_bits)
        out[name] = _params(entry["scale"], entry["zero_point"], entry.get("channel_dim"), key, lmin, lmax)
    return out


def _mode_after_import(data: Mapping[str, Any], new: ParameterState, config: QuantizationConfig,
                       mode: QuantizationMode | None) -> QuantizationConfig:
    """An explicit quantization_mode is applied as given, so that an export imports back exactly. Without one,
    imported parameters switch a dynamic-mode instance to CALIBRATED so that they are used; STATIC and CALIBRATED
    instances use stored parameters already and keep their mode."""
    if mode is not None:
        return config.replace(quantization_mode=mode)
    if new.is_calibrated and not config.quantization_mode.needs_parameters and (
        data.get("is_calibrated") is True or any(k in data for k in ("global_scale", "per_channel_scales"))
    ):
        return config.replace(quantization_mode=QuantizationMode.CALIBRATED)
    return config


def explicit_params(scale: Any, zero_point: Any, channel_dim: int | None, qmin: int, qmax: int) -> QParams:
    """Parameters given with a request (numbers, or lists for per-channel codes along `channel_dim`), checked as
    an import is; a missing zero point is 0, as in ONNX DequantizeLinear."""
    if scale is None:
        raise ParameterError("zero_point was given without scale", field="scale")
    if zero_point is None:
        zero_point = [0] * len(scale) if isinstance(scale, list) else 0
    if isinstance(scale, list) != isinstance(zero_point, list):
        raise ParameterError("scale and zero_point must both be numbers or both be lists", field="zero_point")
    try:
        return _params(scale, zero_point, channel_dim, "request", qmin, qmax)
    except ParameterError as exc:
        field = "zero_point" if "zero_point" in exc.message else "scale"
        raise ParameterError(exc.message.replace("request.", ""), field=field) from None


def applicable_params(state: ParameterState, plan: LayerPlan) -> tuple[QParams, str] | None:
    """The stored parameters that apply to a layer, and where they come from: the layer's own, then the
    per-channel ones for a per-channel layer, then the global ones, then any per-channel ones. The one rule that
    quantize, dequantize and layer_params all follow."""
    if not (plan.effective_type.is_integer or plan.effective_type.is_float8):
        return None
    if state.block_params is not None:
        return state.block_params, "block"
    if plan.layer_name is not None and plan.layer_name in state.layer_params:
        return state.layer_params[plan.layer_name], "layer"
    if plan.per_channel and state.channel_params is not None:
        return state.channel_params, "per_channel"
    if state.global_params is not None:
        return state.global_params, "global"
    if state.channel_params is not None:
        return state.channel_params, "per_channel"
    return None
