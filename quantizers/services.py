"""Use-cases that change state. Each owns its transaction; views and the admin call these and nothing else.

Counters are added in SQL (`column = column + delta`) in one UPDATE per request (no read-modify-write, so
concurrent workers lose no increment); the same UPDATE stores the parameters the request used. Changes of config
or parameters bump the instance's version so that every worker rebuilds its engine object on its next request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import IntegrityError, transaction
from django.db.models import F

from engine import (
    QUALITY_FIELDS,
    STATS_FIELDS,
    EngineError,
    Evaluation,
    OpResult,
    QParams,
    QualityStats,
    QuantizationConfig,
    Quantizer,
    Stats,
    evaluate,
)

from . import hotpath, jobs, metrics, registry
from .arrays import max_elements
from .exceptions import BadRequest, DefaultInstanceProtected, InstanceExists, InstanceNotFound, ServiceError
from .models import DEFAULT_INSTANCE_ID, Job, QuantizerInstance, QuantizerParameters, QuantizerStats
from .registry import build_quantizer
from .selectors import check_instance_id, instance_get
from .stored import copy_parameters, store_parameters

OPERATIONS: tuple[str, ...] = ("quantize", "dequantize", "quantize_dequantize")
MSG_NOT_FINITE = ("the result holds {count} value(s) that are not finite float32 numbers (they overflow to "
                  "+-inf), which JSON cannot carry: ask for the answer as application/x-npy or "
                  "application/octet-stream (Accept header), which carry them")


# ---------------------------------------------------------------------------- instances
def instance_create(*, instance_id: str, config: Mapping[str, Any]) -> QuantizerInstance:
    """INSERT the instance; a duplicate id is the database's unique-constraint error (never check-then-create)."""
    check_instance_id(instance_id)
    cfg = QuantizationConfig.from_dict(config)
    try:
        with transaction.atomic():
            instance = QuantizerInstance.objects.create(instance_id=instance_id, config=cfg.to_dict())
            QuantizerParameters.objects.create(instance=instance)
            QuantizerStats.objects.create(instance=instance)
    except IntegrityError:
        raise InstanceExists(instance_id) from None
    return instance


def instance_delete(*, instance_id: str) -> None:
    check_instance_id(instance_id)
    if instance_id == DEFAULT_INSTANCE_ID:
        raise DefaultInstanceProtected()
    for job_id in Job.objects.filter(instance_id=instance_id).values_list("pk", flat=True):
        jobs.job_delete(job_id)  # their files too (the rows alone would go with the instance)
    _, per_model = QuantizerInstance.objects.filter(pk=instance_id).delete()
    if per_model.get(QuantizerInstance._meta.label, 0) == 0:
        raise InstanceNotFound(instance_id)
    registry.active().forget(instance_id)


def instance_duplicate(*, source_id: str, new_id: str) -> QuantizerInstance:
    """A new instance with the source's config and parameters (fresh statistics)."""
    source = instance_get(source_id)
    instance = instance_create(instance_id=new_id, config=source.config)
    copy_parameters(source, instance)
    return instance


def _locked(instance_id: str) -> QuantizerInstance:
    check_instance_id(instance_id)
    try:
        # of=("self",): lock the instance row only; PostgreSQL refuses FOR UPDATE on the outer-joined parameters.
        return QuantizerInstance.objects.select_for_update(of=("self",)).select_related("parameters").get(
            pk=instance_id
        )
    except QuantizerInstance.DoesNotExist:
        raise InstanceNotFound(instance_id) from None


def _save_state(instance: QuantizerInstance, config: QuantizationConfig, *,
                exported: Mapping[str, Any] | None = None) -> None:
    """Persist the config (and the parameters, as export_parameters wrote them) and bump the version, inside the
    caller's transaction."""
    if exported is not None:
        store_parameters(instance, exported)
    QuantizerInstance.objects.filter(pk=instance.pk).update(config=config.to_dict(), version=F("version") + 1)


def _parameters_depend_on(cfg: QuantizationConfig) -> tuple[Any, ...]:
    return cfg.quantization_type, cfg.num_bits, cfg.symmetric, cfg.qparams_rule


def instance_update_config(*, instance_id: str, config: Mapping[str, Any], partial: bool = False
                           ) -> QuantizationConfig:
    """PUT replaces the whole config (absent fields take the defaults); PATCH changes the given fields.

    Stored parameters survive unless the change alters what they depend on (type, bits, symmetry, qparams_rule):
    then they are cleared, since codes computed for another range would be wrong. So are the latest quantize's
    parameters, which a dynamic-mode dequantize would otherwise still apply (zero point -86 on UINT8 or 4-bit
    codes).
    """
    with transaction.atomic():
        instance = _locked(instance_id)
        current = QuantizationConfig.from_dict(instance.config)
        new = QuantizationConfig.from_dict(config, base=current if partial else None)
        if _parameters_depend_on(new) != _parameters_depend_on(current):
            QuantizerStats.objects.filter(instance_id=instance.pk).update(last_params=None)
            _save_state(instance, new, exported=Quantizer(new).export_parameters())
        else:
            _save_state(instance, new)  # the stored parameters stay as they are
    return new


# ---------------------------------------------------------------------------- operations
def instance_run(
    *,
    instance_id: str,
    operation: str,
    data: npt.NDArray[Any],
    validate: bool = True,
    channel_dim: int | None = None,
    layer_name: str | None = None,
    scale: Any = None,
    zero_point: Any = None,
    finite_only: bool = False,
    report: bool = False,
) -> OpResult:
    """quantize, dequantize or quantize_dequantize `data`, and add the call to the stored statistics.

    `scale` / `zero_point` (dequantize only) win over stored parameters. `report` (quantize and
    quantize_dequantize): the result carries a quality report, which the statistics' quality figures add up.
    `finite_only`: the answer goes out as
    JSON, which has no infinity; a result that overflowed is then refused before anything is recorded. The
    queries are hand-written SQL (`hotpath`: the ORM's compilation of them cost half a small request).

    A quantize on an engine object this worker holds runs first, and its UPDATE counts it only if the instance row
    still has the state that object was built from: one statement where the SELECT before the run was another. When
    it does not (the instance changed, went or came back), or the run failed (a deleted instance answers 404
    before any error of the data), it is run again the full way, from the row read first. (Not a
    quantize_dequantize, which with optimize_memory overwrites `data`: it could not run again.)"""
    run = functools.partial(_operate, operation=operation, data=data, validate=validate, channel_dim=channel_dim,
                            layer_name=layer_name, scale=scale, zero_point=zero_point, finite_only=finite_only,
                            report=report)
    quantized = operation != "dequantize"
    known = registry.active().known(instance_id) if operation == "quantize" else None
    if known is not None:
        quantizer, state = known
        try:
            result = run(quantizer, None)
        except (EngineError, ServiceError):
            pass
        else:
            if hotpath.record_stats(instance_id, result, quantized=True, state=state):
                metrics.operation_done(instance_id, operation, result)
                return result
    quantizer, stored_last = hotpath.run_state(instance_id, last_params=not quantized)
    result = run(quantizer, stored_last)
    hotpath.record_stats(instance_id, result, quantized=quantized)
    metrics.operation_done(instance_id, operation, result)
    return result


def _operate(quantizer: Quantizer, stored_last: Any, *, operation: str, data: npt.NDArray[Any], validate: bool,
             channel_dim: int | None, layer_name: str | None, scale: Any, zero_point: Any, finite_only: bool,
             report: bool) -> OpResult:
    """One run of instance_run's operation on `quantizer` (a dequantize with the stored latest parameters)."""
    if operation == "dequantize":
        last = None if not stored_last else QParams.from_dict(stored_last)
        result = quantizer.dequantize(data, channel_dim=channel_dim, layer_name=layer_name, scale=scale,
                                      zero_point=zero_point, last_params=last)
    elif operation == "quantize":
        result = quantizer.quantize(data, validate=validate, channel_dim=channel_dim, layer_name=layer_name,
                                    report=report)
    else:
        result = quantizer.quantize_dequantize(data, validate=validate, channel_dim=channel_dim,
                                               layer_name=layer_name, report=report)
    if finite_only and result.data.dtype.kind == "f":
        not_finite = result.data.size - int(np.count_nonzero(np.isfinite(result.data)))
        if not_finite:
            raise BadRequest(MSG_NOT_FINITE.format(count=not_finite), field="data", code="output.not_finite")
    return result


def instance_evaluate(*, instance_id: str, data: npt.NDArray[Any], candidates: Sequence[Mapping[str, Any]] | None,
                      min_sqnr_db: float | None) -> Evaluation:
    """Each candidate (partial configs over the instance's, or the standard grid) run on `data` by fresh engine
    objects; changes nothing. Values x candidates beyond QUANTIZER_MAX_ELEMENTS is a 413 before any is run."""
    base = QuantizationConfig.from_dict(instance_get(instance_id).config)
    return evaluate(data, base, candidates, min_sqnr_db, max_values=max_elements())


def instance_compute_params(
    *, instance_id: str, data: npt.NDArray[Any], channel_idx: int | None = None, channel_dim: int | None = None,
    layer_name: str | None = None,
) -> QParams:
    """Parameters the data would get; changes nothing (no stats, no state)."""
    quantizer = registry.active().get(instance_get(instance_id))
    return quantizer.compute_params(data, channel_idx=channel_idx, channel_dim=channel_dim, layer_name=layer_name)


def instance_calibrate(*, instance_id: str, batches: Sequence[npt.NDArray[Any]], channel_dim: int | None = None
                       ) -> tuple[QParams, dict[str, Any]]:
    """Calibrate on a fresh engine object and persist parameters and config (mode CALIBRATED) with the version
    bump in one transaction; a failure stores nothing."""
    with transaction.atomic():
        instance = _locked(instance_id)
        quantizer = build_quantizer(instance)
        params = quantizer.calibrate(batches, channel_dim=channel_dim)
        exported = quantizer.export_parameters()
        _save_state(instance, quantizer.config, exported=exported)
    return params, exported


def instance_import_parameters(*, instance_id: str, parameters: Mapping[str, Any]) -> None:
    with transaction.atomic():
        instance = _locked(instance_id)
        quantizer = build_quantizer(instance)
        quantizer.import_parameters(parameters)
        _save_state(instance, quantizer.config, exported=quantizer.export_parameters())


def instance_reset_stats(*, instance_id: str) -> None:
    """Zero the counters and the quality figures. The latest quantize's parameters are state, not statistics: they
    stay, so a dynamic dequantize still works after a reset."""
    check_instance_id(instance_id)
    # The statistics' fields back to their start values (counters, last_scale, ..., the quality figures), from the
    # engine's Stats and QualityStats.
    fresh, quality = Stats(), QualityStats()
    updated = QuantizerStats.objects.filter(instance_id=instance_id).update(
        **{name: getattr(fresh, name) for name in STATS_FIELDS},
        **{name: getattr(quality, name) for name in QUALITY_FIELDS},
    )
    if not updated:
        raise InstanceNotFound(instance_id)


def instance_clear_cache(*, instance_id: str) -> None:
    """Bump the cache epoch: every worker drops its dequantization cache on its next request."""
    check_instance_id(instance_id)
    if not QuantizerInstance.objects.filter(pk=instance_id).update(cache_epoch=F("cache_epoch") + 1):
        raise InstanceNotFound(instance_id)

