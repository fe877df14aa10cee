"""Per-tensor shortcuts for small arrays, where per-call overhead, not the data, is the cost.

A 2x3 quantize spent most of its ~250 us in a dozen 0-d array operations (the range pass over finite values, the
finiteness checks), a few microseconds each, and then in the set-up of three compiled calls (range, parameters,
codes). Here, for a per-tensor integer quantize of at most MAX_ELEMENTS values:
- the finiteness checks run on numpy float32 scalars and Python numbers;
- a dynamic quantize of finite data by the `onnx` or `torch` rule is one compiled call (`quantize_dynamic`: the
  one-pass block kernel with the whole array as one block: range, parameters by the compiled rule that
  `qparams.scale_zero_point` runs, codes);
- otherwise (frozen parameters; dynamic ones by the `ort_tooling` rule or of data with NaN / inf allowed, which
  come from the instance's rule as always, `ranges.params_for_range`) the codes come from a few numpy operations
  on the whole array (`quantize`) instead of the compiled kernel, whose dispatch and set-up cost more than the
  arithmetic there. Both round alike (float32 division, rint half to even, the zero point added after rounding, no
  fastmath), so the results are the same bits.
tests/engine/test_small_arrays.py compares every path with the general code. Anything else (per channel, blocks,
float8, percentiles, outlier clipping, requantization, larger arrays) goes the general way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels, ranges
from .config import QParamsRule, QuantizationConfig
from .kernels import Sums
from .layers import LayerPlan
from .qparams import STORAGE_DTYPES, QParams, qrange

F32 = np.float32
# Per-tensor integer quantize of at most this many values runs here. `bench/small.py --crossover` (frozen
# parameters, load 1.6): numpy's path 26 / 30 / 36 us at 6 / 4096 / 16384 values against the kernel's 37 / 42 / 44,
# the kernel ahead from 64K (86 against 135 us); this stays below, where numpy's temporaries are L1/L2-sized.
MAX_ELEMENTS = 4096
REPORT_MAX_ELEMENTS = 64  # with the report, whose sums are taken in Python (_sums)


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


def quantize_dynamic(config: QuantizationConfig, x: npt.NDArray[np.float32], plan: LayerPlan, fake: bool,
                     report: bool) -> tuple[npt.NDArray[Any], int, QParams, Sums | None] | None:
    """A dynamic per-tensor integer quantize of a small array in one compiled call: kernels.quantize_blocks with
    the whole array as one block takes its range, the parameters by the instance's rule (the compiled onnx / torch
    rule scale_zero_point runs) and the codes (fake: the dequantized values), instead of a range pass, the
    parameters' array code and a quantize, each with its own set-up. Returns (result, clipped count, parameters,
    with `report` the report's sums), or None where it does not apply: more than MAX_ELEMENTS values
    (REPORT_MAX_ELEMENTS with `report`), the ort_tooling rule (float64: qparams),
    percentiles, outlier clipping, requantization, non-finite data or parameters that need the float64 fallback
    (the kernel turns those down). The caller has checked that the parameters are per tensor."""
    if (x.size > (REPORT_MAX_ELEMENTS if report else MAX_ELEMENTS) or config.qparams_rule is QParamsRule.ort_tooling
            or config.use_percentile or config.outlier_threshold is not None or config.enable_requantization):
        return None
    cmin, cmax, symmetric, rule = ranges.integer_rule(config, plan, False)
    dtype = np.dtype(F32 if fake else STORAGE_DTYPES[plan.quantization_type])
    flat = x.reshape(-1)
    done = kernels.quantize_blocks(flat, 0, flat.size, qrange(plan.quantization_type, plan.num_bits), (cmin, cmax),
                                   symmetric, rule is QParamsRule.torch, dtype)
    if done is None:
        return None
    out, clipped, scale, zp, _ = done
    out = out.reshape(x.shape)
    params = QParams(scale.reshape(()), zp.astype(np.int64).reshape(()))
    if not report:
        return out, clipped, params, None
    s, z = F32(params.scale), F32(params.zero_point)
    with np.errstate(over="ignore"):  # a huge scale dequantizes to +-inf, as in the kernel: the report is redone
        return out, clipped, params, _sums(x, out if fake else (out.astype(F32) - z) * s)


def applies(x: npt.NDArray[np.float32], params: QParams, report: bool) -> bool:
    """Whether `quantize` stands in for the kernel: one scale and zero point, few values."""
    return params.axis is None and x.size <= (REPORT_MAX_ELEMENTS if report else MAX_ELEMENTS)


def quantize(x: npt.NDArray[np.float32], params: QParams, qmin: int, qmax: int, dtype: npt.DTypeLike, fake: bool,
             out: npt.NDArray[Any] | None, report: bool) -> tuple[npt.NDArray[Any], int, Sums | None]:
    """kernels.quantize_counted with count_clipped, per tensor, for a small float32 array: q = clip(rint(x / s) + zp,
    qmin, qmax) in float32 (NaN -> zp), fake y = (q - zp) * s; the clipped count (values outside [qmin, qmax]
    after rounding, NaN, +-inf); with `report` the quality report's sums. `out` may be `x` itself. Overflow
    warnings are the caller's (np.errstate) business, as for the kernel."""
    s, z = F32(params.scale), F32(params.zero_point)
    lo, hi = F32(qmin), F32(qmax)
    c = np.divide(x, s)
    np.rint(c, out=c)
    c += z
    clipped = 0
    # Mostly nothing clips (dynamic parameters cover the data): two reductions tell, and NaN fails them.
    if not (np.minimum.reduce(c, axis=None) >= lo and np.maximum.reduce(c, axis=None) <= hi):
        nan = np.isnan(c)
        clipped = int(np.count_nonzero(nan | (c < lo) | (c > hi)))
        np.clip(c, lo, hi, out=c)
        c[nan] = z  # NaN has no code: the zero point's
    y = (c - z) * s if fake or report else None
    result: npt.NDArray[Any] = y if fake and y is not None else c.astype(dtype)
    sums = _sums(x, y) if report and y is not None else None
    if out is not None:
        np.copyto(out, result)
        result = out
    return result, clipped, sums


def _sums(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32]) -> Sums:
    """kernels.Sums of the dequantized values `y` against `x` (e = y - x in float32, sums in float64, in order as
    the kernel sums its last few values). Non-finite inputs make them non-finite, as the kernel's: the caller then
    takes the report again without them. Python numbers: on a few dozen values numpy's reductions cost more."""
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, as in the kernel
        es = (y - x).reshape(-1).tolist()
    xs = x.reshape(-1).tolist()  # float32 values, exact as Python floats
    return Sums(np.array([sum([v * v for v in xs])]), np.array([sum([v * v for v in es])]), sum(es),
                max(map(abs, es)), min(xs), max(xs), len(xs))
