"""The parameters data gets in the dynamic modes: its range (finite values, percentiles, outlier clipping), the
scale and zero point for that range, and the optional search for a narrower clip range (requantization)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels
from .config import QuantizationConfig, QuantizationMode
from .errors import InputError
from .layers import LayerPlan
from .qparams import QParams, calibration_range, qrange, scale_zero_point

F32 = np.float32
FloatArray = npt.NDArray[np.float32]

REQUANT_FACTORS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
REQUANT_SAMPLE = 1 << 16


def normalize_axis(axis: int | None, ndim: int, field: str = "channel_dim") -> int:
    value = 0 if axis is None else axis
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{field} must be an integer", field=field)
    if not -ndim <= value < ndim:
        raise InputError(f"{field} {value} is out of range for {ndim}-dimensional data", field=field)
    return int(value) % ndim


def dynamic_axis(config: QuantizationConfig, plan: LayerPlan, ndim: int, channel_dim: int | None) -> int | None:
    """The axis along which a dynamic mode takes one range per slice, or None for one range per tensor."""
    mode = config.quantization_mode
    if mode is QuantizationMode.DYNAMIC_PER_BATCH:
        return 0
    if mode is QuantizationMode.DYNAMIC_PER_CHANNEL or plan.per_channel:
        return normalize_axis(channel_dim, ndim)
    return None


def data_range(config: QuantizationConfig, x: FloatArray, axis: int | None, lo: Any, hi: Any) -> tuple[Any, Any]:
    """The real range to quantize for, from the raw extremes `lo`/`hi` already computed along `axis`: finite
    values only (when non-finite ones were allowed), percentiles, outlier clipping."""
    axes = tuple(i for i in range(x.ndim) if i != axis) if axis is not None else None
    lo, hi = np.asarray(lo, F32), np.asarray(hi, F32)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        x = np.where(np.isfinite(x), x, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels: their range becomes [0, 0]
            lo = np.nan_to_num(np.nanmin(x, axis=axes), nan=0.0).astype(F32)
            hi = np.nan_to_num(np.nanmax(x, axis=axes), nan=0.0).astype(F32)
        x = np.nan_to_num(x, nan=0.0)
    if config.use_percentile:
        lo = np.percentile(x, config.min_percentile, axis=axes).astype(F32)
        hi = np.percentile(x, config.max_percentile, axis=axes).astype(F32)
    if config.outlier_threshold is not None:
        # Values beyond mean +- t * std are clipped before the range is taken.
        mean = np.mean(x, axis=axes, dtype=np.float64)
        std = np.std(x, axis=axes, dtype=np.float64)
        t = config.outlier_threshold
        lo = np.maximum(lo, (mean - t * std).astype(F32)).astype(F32)
        hi = np.minimum(hi, (mean + t * std).astype(F32)).astype(F32)
    return lo, hi


def params_for_range(config: QuantizationConfig, lo: Any, hi: Any, plan: LayerPlan, axis: int | None) -> QParams:
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
    symmetric = plan.symmetric or config.quantization_mode is QuantizationMode.SYMMETRIC
    rule = config.qparams_rule
    cmin, cmax = calibration_range(qmin, qmax, symmetric, rule)
    scale, zp = scale_zero_point(lo, hi, cmin, cmax, symmetric, rule)
    return QParams(scale, zp, axis)


def refine(config: QuantizationConfig, x: FloatArray, lo: Any, hi: Any, params: QParams, plan: LayerPlan) -> QParams:
    """enable_requantization: while the relative RMS error of the round trip exceeds the threshold, try a bounded
    list of narrower clip ranges (REQUANT_FACTORS of the range) and keep the best. Per tensor only."""
    if params.axis is not None:
        return params
    sample = x.reshape(-1)
    if sample.size > REQUANT_SAMPLE:
        sample = sample[:: sample.size // REQUANT_SAMPLE]
    sample = sample[np.isfinite(sample)]
    norm = float(np.sqrt(np.mean(np.square(sample, dtype=np.float64)))) if sample.size else 0.0
    if norm == 0.0:
        return params
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits)

    def rel_error(p: QParams) -> float:
        fq = kernels.quantize(sample, p, qmin, qmax, F32, dequantize_after=True)
        return float(np.sqrt(np.mean(np.square(np.subtract(fq, sample, dtype=F32), dtype=np.float64)))) / norm

    best, best_err = params, rel_error(params)
    for factor in REQUANT_FACTORS:
        if best_err <= config.requantization_threshold:
            break
        candidate = params_for_range(config, F32(lo) * F32(factor), F32(hi) * F32(factor), plan, None)
        err = rel_error(candidate)
        if err < best_err:
            best, best_err = candidate, err
    return best


def dynamic_params(config: QuantizationConfig, x: FloatArray, plan: LayerPlan, axis: int | None,
                   raw: tuple[Any, Any] | None = None) -> QParams:
    """The parameters of `x` (per tensor, or per slice along `axis`); `raw` are its extremes if already taken."""
    lo, hi = data_range(config, x, axis, *(raw if raw is not None else kernels.minmax(x, axis)))
    params = params_for_range(config, lo, hi, plan, axis)
    if config.enable_requantization:
        params = refine(config, x, lo, hi, params, plan)
    return params
