"""The parameters data gets in the dynamic modes: its range (finite values, percentiles, outlier clipping), the
scale and zero point for that range, and the optional search for a narrower clip range (requantization)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from . import formats, kernels
from .config import QParamsRule, QuantizationConfig, QuantizationMode, QuantizationType
from .errors import InputError
from .layers import LayerPlan
from .qparams import STORAGE_DTYPES, QParams, calibration_range, qrange, scale_zero_point

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


def params_for_range(config: QuantizationConfig, lo: Any, hi: Any, plan: LayerPlan, axis: int | None,
                     block_size: int | None = None) -> QParams:
    qtype = plan.quantization_type
    if qtype.is_float8:
        return QParams(*fp8_scale(lo, hi, qtype), axis, block_size)
    cmin, cmax, symmetric, rule = integer_rule(config, plan, block_size is not None)
    scale, zp = scale_zero_point(lo, hi, cmin, cmax, symmetric, rule)
    return QParams(scale, zp, axis, block_size)


def integer_rule(config: QuantizationConfig, plan: LayerPlan, blocked: bool) -> tuple[int, int, bool, QParamsRule]:
    """How integer parameters are derived from a range: (calibration qmin, qmax, symmetric, rule)."""
    qtype = plan.quantization_type
    qmin, qmax = qrange(qtype, plan.num_bits)
    symmetric = plan.symmetric or config.quantization_mode is QuantizationMode.SYMMETRIC
    rule = config.qparams_rule
    # ORT's tooling gives INT4 its full range -8..7 when symmetric (INT8 / INT16: -qmax..qmax).
    narrow = not (rule is QParamsRule.ort_tooling and qtype is QuantizationType.INT4)
    if rule is QParamsRule.ort_tooling and blocked:
        # compute_scale_zp_blocked works in float32 over the full range: float32(hi - lo) / float32(qmax - qmin)
        # (symmetric: 2 amax / (qmax - qmin)), zp = round(qmin - lo / scale): the onnx rule's arithmetic.
        rule, narrow = QParamsRule.onnx, False
    cmin, cmax = calibration_range(qmin, qmax, symmetric, rule, narrow)
    return cmin, cmax, symmetric, rule


def fp8_scale(lo: Any, hi: Any, qtype: QuantizationType) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """float32(amax) / float32(448) (E4M3FN) or / float32(57344) (E5M2) over the (finite) range; scale 1 where
    amax is 0 (or the quotient is not a normal float32); zero point 0."""
    amax = np.maximum(np.abs(np.asarray(lo, F32)), np.abs(np.asarray(hi, F32)))
    top = F32(formats.FP8_MAX["e4m3fn" if qtype is QuantizationType.FP8_E4M3 else "e5m2"])
    with np.errstate(under="ignore"):
        scale = np.asarray(amax / top, F32)
    scale = np.where(np.isfinite(scale) & (scale >= np.finfo(F32).tiny), scale, F32(1)).astype(F32)
    return scale, np.zeros(scale.shape, np.int64)


def block_params(config: QuantizationConfig, x: FloatArray, plan: LayerPlan, axis: int,
                 raw: tuple[Any, Any] | None = None) -> QParams:
    """One scale (and zero point) per block of `config.group_size` elements along `axis`, from each block's
    min / max over its finite values (`raw`: the blocks' extremes, if already taken)."""
    lo, hi = raw if raw is not None else formats.block_minmax(x, axis, config.group_size, raw=True)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        lo, hi = formats.block_minmax(x, axis, config.group_size)
    return params_for_range(config, lo, hi, plan, axis, config.group_size)


def quantize_blocks(config: QuantizationConfig, x: FloatArray, plan: LayerPlan, axis: int, dequantize_after: bool,
                    out: npt.NDArray[Any] | None = None) -> tuple[npt.NDArray[Any], int, QParams] | None:
    """Dynamic grouped integer quantization in one pass (kernels.quantize_blocks): the codes (fake: the dequantized
    values), the clipped count and the block parameters, each block's parameters from its own range by
    block_params' rule. None where that pass does not apply (blocks along an inner axis, non-finite data, a block
    whose parameters need the float64 fallback, such as an all-zero block): then block_params and a quantize
    pass. `out` may be `x` itself (fake quantization): a block is read before it is written."""
    cmin, cmax, symmetric, rule = integer_rule(config, plan, True)
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
    dtype = np.dtype(F32 if dequantize_after else STORAGE_DTYPES[plan.quantization_type])
    done = kernels.quantize_blocks(x, axis, config.group_size, (qmin, qmax), (cmin, cmax), symmetric,
                                   rule is QParamsRule.torch, dtype, out)
    if done is None:
        return None
    target = formats.block_shape(x.shape, axis, config.group_size)
    return done.out, done.clipped, QParams(done.scale.reshape(target), done.zp.astype(np.int64).reshape(target),
                                           axis, config.group_size)


def quantize_channels(config: QuantizationConfig, x: FloatArray, plan: LayerPlan, axis: int, dequantize_after: bool,
                      report: bool = False) -> tuple[npt.NDArray[Any], int, QParams, kernels.Sums | None] | None:
    """Dynamic per-channel integer quantization in one pass, when each channel is one contiguous run (the channel
    axis is the first of any size above 1, e.g. the output channels of a [out, in] weight): each run is a block of
    kernels.quantize_blocks, so its range, parameters, codes and with `report` the report's sums come while it is
    in L1. The parameters are those of dynamic_params (the range as it is, by the onnx or torch rule); None where
    that does not hold (percentiles, outlier clipping, the ort_tooling rule, non-finite data, a channel that needs
    the float64 fallback, short runs): then the range pass and a quantize pass."""
    outer = math.prod(x.shape[:axis])
    channels, inner = x.shape[axis], math.prod(x.shape[axis + 1:])
    cmin, cmax, symmetric, rule = integer_rule(config, plan, False)
    if (outer != 1 or inner < kernels.SEGMENT_MIN or config.use_percentile or config.outlier_threshold is not None
            or rule is QParamsRule.ort_tooling or x.size == 0):
        return None
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
    dtype = np.dtype(F32 if dequantize_after else STORAGE_DTYPES[plan.quantization_type])
    done = kernels.quantize_blocks(np.reshape(x, (channels, inner)), 1, inner, (qmin, qmax), (cmin, cmax), symmetric,
                                   rule is QParamsRule.torch, dtype, report=report)
    if done is None:
        return None
    return done.out.reshape(x.shape), done.clipped, QParams(done.scale, done.zp.astype(np.int64), axis), done.sums


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
    if config.enable_requantization and plan.quantization_type.is_integer:
        params = refine(config, x, lo, hi, params, plan)
    return params
