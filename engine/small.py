"""Per-tensor shortcuts for small arrays, where numpy's per-call overhead on 0-d arrays, not the data, is the cost.

A 2x3 quantize spent most of its ~250 us in a dozen 0-d array operations (scale and zero point, the finiteness
checks, whether anything can clip), a few microseconds each. Here the same arithmetic runs on numpy float32 scalars
and Python ints and floats, which round alike (float32 division, float64 scale rounded once to float32, rint half to
even), so the results are the same bits; tests/engine/test_small_arrays.py compares them with the general code.
Anything else (per channel, percentiles, outlier clipping, requantization, non-finite extremes) goes the general way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import ranges
from .config import QuantizationConfig, QuantizationMode
from .layers import LayerPlan
from .qparams import QParams, calibration_range, qrange

F32 = np.float32
_TINY = float(np.finfo(np.float32).tiny)


def all_finite(lo: Any, hi: Any) -> bool:
    """np.isfinite(lo).all() and np.isfinite(hi).all(), without numpy calls when both are scalars."""
    if isinstance(lo, (float, np.floating)) and isinstance(hi, (float, np.floating)):
        return math.isfinite(lo) and math.isfinite(hi)
    return bool(np.isfinite(lo).all() and np.isfinite(hi).all())


def scale_zero_point(rmin: Any, rmax: Any, qmin: int, qmax: int, symmetric: bool) -> tuple[np.float32, int]:
    """qparams.scale_zero_point for one finite range, in scalars (see there for the rules)."""
    lo = F32(rmin) if rmin < 0 else F32(0)  # the sign of a zero lower end changes nothing below
    hi = F32(rmax) if rmax > 0 else F32(0)
    if symmetric:
        amax = max(abs(lo), abs(hi))
        lo, hi = -amax, amax
    scale = F32((float(hi) - float(lo)) / float(qmax - qmin))  # float64, rounded once to float32
    if not scale >= _TINY:
        return F32(1), 0
    if symmetric:
        return scale, int(np.rint((qmin + qmax) / 2))
    zp = int(np.rint(F32(qmin) - lo / scale))  # float32 arithmetic, as the array version
    return scale, min(max(zp, qmin), qmax)


def dynamic_params(config: QuantizationConfig, x: Any, plan: LayerPlan, axis: int | None,
                   raw: tuple[Any, Any]) -> QParams:
    """ranges.dynamic_params, from scalars when the range is one finite (min, max) used as it is."""
    lo, hi = raw
    if (axis is not None or not isinstance(lo, np.floating) or not isinstance(hi, np.floating)
            or not (math.isfinite(lo) and math.isfinite(hi)) or config.use_percentile
            or config.outlier_threshold is not None or config.enable_requantization):
        return ranges.dynamic_params(config, x, plan, axis, raw)
    qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
    symmetric = plan.symmetric or config.quantization_mode is QuantizationMode.SYMMETRIC
    scale, zp = scale_zero_point(lo, hi, *calibration_range(qmin, qmax, symmetric), symmetric)
    return QParams(np.array(scale, dtype=F32), np.array(zp, dtype=np.int64), None)


def may_clip(params: QParams, qmin: int, qmax: int, lo: Any, hi: Any) -> bool | None:
    """Whether rint(x / scale) + zp leaves [qmin, qmax] at a scalar extreme (float32 arithmetic, as
    kernels.code_of), for per-tensor parameters; None when this does not apply."""
    if params.axis is not None or not isinstance(lo, np.floating) or not isinstance(hi, np.floating):
        return None
    scale, zp = F32(params.scale.item()), F32(params.zero_point.item())
    if not max(abs(float(lo)), abs(float(hi))) < 1e37 * float(scale):  # x / scale might overflow (or is NaN)
        return None
    return not (np.rint(F32(lo) / scale) + zp >= qmin and np.rint(F32(hi) / scale) + zp <= qmax)
