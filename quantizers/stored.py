"""The one place that reads and writes an instance's stored parameters (the engine's STATE_KEYS): `layer_params`
as LayerParameters rows (one per layer, with the job that set it), every other key a column of
QuantizerParameters. Writes run inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .models import LAYER_PARAMS_KEY, PARAMETER_COLUMNS, Job, LayerParameters, QuantizerInstance, QuantizerParameters


def stored_parameters(instance: QuantizerInstance) -> dict[str, Any]:
    """Every stored key, as export_parameters writes them ({} when the instance has no parameters row)."""
    row = getattr(instance, "parameters", None)
    if row is None:
        return {}
    out: dict[str, Any] = {name: getattr(row, name) for name in PARAMETER_COLUMNS}
    out[LAYER_PARAMS_KEY] = layer_parameters(instance.pk)
    return out


def layer_parameters(instance_id: str) -> dict[str, Any]:
    return dict(LayerParameters.objects.filter(instance_id=instance_id).order_by("layer_name")
                .values_list("layer_name", "params"))


def store_parameters(instance: QuantizerInstance, exported: Mapping[str, Any]) -> None:
    """Persist the parameters as export_parameters wrote them: the columns, and the layer rows made equal to
    `exported["layer_params"]` (rows whose parameters did not change keep their source job)."""
    QuantizerParameters.objects.update_or_create(
        instance=instance, defaults={name: exported[name] for name in PARAMETER_COLUMNS}
    )
    layers: Mapping[str, Any] = exported.get(LAYER_PARAMS_KEY) or {}
    current = layer_parameters(instance.pk)
    LayerParameters.objects.filter(instance=instance).exclude(layer_name__in=list(layers)).delete()
    for name, params in layers.items():
        if current.get(name) != params:
            LayerParameters.objects.update_or_create(instance=instance, layer_name=name,
                                                     defaults={"params": params, "source_job": None})


def store_layer_parameters(instance_id: str, layers: Mapping[str, Any], *, job: Job) -> None:
    """Set these layers' parameters (a job's result), keeping the other layers' rows."""
    for name, params in layers.items():
        LayerParameters.objects.update_or_create(instance_id=instance_id, layer_name=name,
                                                 defaults={"params": params, "source_job": job})


def copy_parameters(source: QuantizerInstance, target: QuantizerInstance) -> None:
    store_parameters(target, stored_parameters(source))
