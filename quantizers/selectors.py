"""Reads: instances, their configuration, statistics, parameters and layer parameters."""

from __future__ import annotations

import re
from typing import Any

from engine import QUALITY_FIELDS, STATS_FIELDS, QuantizationConfig, quality_summary

from . import registry
from .exceptions import InstanceNotFound, InvalidInstanceId
from .models import INSTANCE_ID_PATTERN, QuantizerInstance

_ID_RE = re.compile(INSTANCE_ID_PATTERN)


def check_instance_id(instance_id: str) -> str:
    if not isinstance(instance_id, str) or not _ID_RE.fullmatch(instance_id):
        raise InvalidInstanceId()
    return instance_id


def instance_list() -> list[str]:
    return list(QuantizerInstance.objects.order_by("instance_id").values_list("instance_id", flat=True))


def instance_get(instance_id: str) -> QuantizerInstance:
    """The instance with its parameters and statistics, in one query."""
    check_instance_id(instance_id)
    try:
        return QuantizerInstance.objects.select_related("parameters", "stats").get(pk=instance_id)
    except QuantizerInstance.DoesNotExist:
        raise InstanceNotFound(instance_id) from None


def instance_config(instance_id: str) -> dict[str, Any]:
    return QuantizationConfig.from_dict(instance_get(instance_id).config).to_dict()


def instance_stats(instance_id: str) -> dict[str, Any]:
    stats = instance_get(instance_id).stats
    out: dict[str, Any] = {name: getattr(stats, name) for name in STATS_FIELDS}
    # last_channel_* describe calls since the last reset, like last_scale (the stored parameters themselves stay).
    last = (stats.last_params or {}) if stats.quantize_calls or stats.dequantize_calls else {}
    per_channel = isinstance(last.get("scale"), list)
    out["last_channel_scales"] = last.get("scale") if per_channel else None
    out["last_channel_zero_points"] = last.get("zero_point") if per_channel else None
    out["quality"] = quality_summary({name: getattr(stats, name) for name in QUALITY_FIELDS})
    return out


def instance_parameters(instance_id: str) -> dict[str, Any]:
    return registry.active().get(instance_get(instance_id)).export_parameters()


def instance_layer_params(instance_id: str, layer_name: str) -> dict[str, Any]:
    return registry.active().get(instance_get(instance_id)).get_layer_params(layer_name)
