"""Per-tensor shortcuts for small arrays, where numpy's per-call overhead on 0-d arrays, not the data, is the cost.

A 2x3 quantize spent most of its ~250 us in a dozen 0-d array operations (the range pass over finite values, the
finiteness checks), a few microseconds each. Here those checks run on numpy float32
scalars and Python numbers, which round alike (float32 division, rint half to even), so the results are the same
bits; tests/engine/test_small_arrays.py compares them with the general code. The scale and zero point always come
from the instance's rule (`ranges.params_for_range`). Anything else (per channel, percentiles, outlier clipping,
requantization, non-finite extremes) goes the general way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import ranges
from .config import QuantizationConfig
from .layers import LayerPlan
from .qparams import QParams

F32 = np.float32
_TINY = float(np.finfo(np.float32).tiny)


def all_finite(lo: Any, hi: Any) -> bool:
    """np.isfinite(lo).all() and np.isfinite(hi).all(), without numpy calls when both are scalars."""
    if isinstance(lo, (float, np.floating)) and isinstance(hi, (float, np.floating)):
        return math.isfinite(lo) and math.isfinite(hi)
    return bool(np.isfinite(lo).all() and np.isfinite(hi).all())


def dynamic_params(config: QuantizationConfig, x: Any, plan: LayerPlan, axis: int | None,
                   raw: tuple[Any, Any]) -> QParams:
    """ranges.dynamic_params, without its range pass when the range is one finite (min, max) used as it is: the
    parameters then come from that range by the instance's rule (ranges.params_for_range, the one place)."""
    lo, hi = raw
    if (axis is not None or not isinstance(lo, np.floating) or not isinstance(hi, np.floating)
            or not (math.isfinite(lo) and math.isfinite(hi)) or config.use_percentile
            or config.outlier_threshold is not None or config.enable_requantization):
        return ranges.dynamic_params(config, x, plan, axis, raw)
    return ranges.params_for_range(config, lo, hi, plan, None)
