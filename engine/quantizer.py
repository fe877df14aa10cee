"""The Quantizer: one configured instance with its parameters, statistics and dequantization cache.

Modes (`QuantizationConfig.quantization_mode`):
- DYNAMIC: parameters from each call's data (per tensor, or per channel along `channel_dim` when `per_channel`);
- SYMMETRIC: as DYNAMIC with symmetric parameters forced;
- DYNAMIC_PER_BATCH: parameters per sample along the leading axis, so each row of a batch has its own;
- DYNAMIC_PER_CHANNEL: parameters per channel along `channel_dim`, whatever `per_channel` says;
- STATIC, CALIBRATED: frozen parameters from `calibrate` or `import_parameters`; using them before either is a
  NotCalibratedError, never a silent scale of 1.0.
In the dynamic modes, dequantize uses the parameters of the most recent quantize (`last_params`, which a web
layer persists so that every worker uses the same); before any quantize it is a NotCalibratedError unless
calibrated or imported parameters exist.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels
from .cache import DequantCache, cache_key
from .calibration import RangeCollector
from .config import QuantizationConfig, QuantizationMode, QuantizationType
from .errors import InputError, NotCalibratedError
from .layers import LayerPlan, resolve_layer
from .metrics import Stats, StatsDelta
from .parameters import ParameterState, export_state, import_state
from .qparams import STORAGE_DTYPES, QParams, calibration_range, qrange, scale_zero_point

F32 = np.float32
FloatArray = npt.NDArray[np.float32]

REQUANT_FACTORS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
REQUANT_SAMPLE = 1 << 16


@dataclasses.dataclass
class OpResult:
    """The outcome of one engine call: the array, what was used, and what it adds to the statistics."""

    data: npt.NDArray[Any]
    quantization_type: QuantizationType
    params: QParams | None
    delta: StatsDelta
    plan: LayerPlan


def normalize_axis(axis: int | None, ndim: int, field: str = "channel_dim") -> int:
    value = 0 if axis is None else axis
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{field} must be an integer", field=field)
    if not -ndim <= value < ndim:
        raise InputError(f"{field} {value} is out of range for {ndim}-dimensional data", field=field)
    return int(value) % ndim


class Quantizer:
    """A quantizer instance. Not thread-safe for writes; the kernels' work buffer is per thread."""

    def __init__(
        self, config: QuantizationConfig | None = None, *, parameters: Mapping[str, Any] | None = None
    ) -> None:
        self.config = config or QuantizationConfig()
        self.state = ParameterState()
        self.stats = Stats()
        self.last_params: QParams | None = None
        self._cache = DequantCache(self.config.cache_size if self.config.enable_cache else 0)
        self._local = threading.local()
        if parameters:
            self.import_parameters(parameters)

    # ------------------------------------------------------------------ helpers
    def _workspace(self) -> kernels.Workspace:
        ws: kernels.Workspace | None = getattr(self._local, "ws", None)
        if ws is None:
            ws = kernels.Workspace(self.config.buffer_size or kernels.DEFAULT_BLOCK)
            self._local.ws = ws
        return ws

    def layer_plan(self, layer_name: str | None) -> LayerPlan:
        return resolve_layer(self.config, layer_name)

    def _finish(self, result: OpResult, started: float) -> OpResult:
        result.delta.processing_time_ms = (time.perf_counter() - started) * 1000.0
        if result.params is not None:
            result.delta.last_scale, zp = result.params.first()
            result.delta.last_zero_point = float(zp)
        self.stats.add(result.delta)
        return result

    @staticmethod
    def _as_float(x: npt.ArrayLike) -> FloatArray:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
            raise InputError("data must be numeric", field="data")
        if arr.ndim == 0 or arr.size == 0:
            raise InputError("data must be a non-empty array", field="data")
        with np.errstate(over="ignore"):  # float64 beyond the float32 range becomes +-inf (error_on_inf decides)
            return np.asarray(arr, dtype=F32)

    def _check_finite(self, x: FloatArray, *, validate: bool, lo: Any, hi: Any) -> int:
        """Apply error_on_nan / error_on_inf from a min/max already computed; return non-finite count allowed."""
        if not validate or (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return 0
        n_nan = int(np.count_nonzero(np.isnan(x)))
        n_inf = int(np.count_nonzero(np.isinf(x)))
        if n_nan and self.config.error_on_nan:
            raise InputError(f"data contains {n_nan} NaN value(s) and error_on_nan is true", field="data",
                             code="input.nan")
        if n_inf and self.config.error_on_inf:
            raise InputError(f"data contains {n_inf} infinite value(s) and error_on_inf is true", field="data",
                             code="input.inf")
        return n_nan + n_inf

    # ------------------------------------------------------------------ ranges and parameters
    def _data_range(self, x: FloatArray, axis: int | None, lo: Any, hi: Any) -> tuple[Any, Any]:
        """The real range to quantize for, from the raw extremes `lo`/`hi` already computed along `axis`:
        finite values only (when non-finite ones were allowed), percentiles, outlier clipping."""
        axes = tuple(i for i in range(x.ndim) if i != axis) if axis is not None else None
        lo, hi = np.asarray(lo, F32), np.asarray(hi, F32)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            x = np.where(np.isfinite(x), x, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels: their range becomes [0, 0]
                lo = np.nan_to_num(np.nanmin(x, axis=axes), nan=0.0).astype(F32)
                hi = np.nan_to_num(np.nanmax(x, axis=axes), nan=0.0).astype(F32)
            x = np.nan_to_num(x, nan=0.0)
        cfg = self.config
        if cfg.use_percentile:
            lo = np.percentile(x, cfg.min_percentile, axis=axes).astype(F32)
            hi = np.percentile(x, cfg.max_percentile, axis=axes).astype(F32)
        if cfg.outlier_threshold is not None:
            # Values beyond mean +- t * std are clipped before the range is taken.
            mean = np.mean(x, axis=axes, dtype=np.float64)
            std = np.std(x, axis=axes, dtype=np.float64)
            t = cfg.outlier_threshold
            lo = np.maximum(lo, (mean - t * std).astype(F32)).astype(F32)
            hi = np.minimum(hi, (mean + t * std).astype(F32)).astype(F32)
        return lo, hi

    def _params_for_range(self, lo: Any, hi: Any, plan: LayerPlan, axis: int | None) -> QParams:
        qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
        symmetric = plan.symmetric or self.config.quantization_mode is QuantizationMode.SYMMETRIC
        cmin, cmax = calibration_range(qmin, qmax, symmetric)
        scale, zp = scale_zero_point(lo, hi, cmin, cmax, symmetric)
        return QParams(scale, zp, axis)

    def _dynamic_axis(self, plan: LayerPlan, ndim: int, channel_dim: int | None) -> int | None:
        mode = self.config.quantization_mode
        if mode is QuantizationMode.DYNAMIC_PER_BATCH:
            return 0
        if mode is QuantizationMode.DYNAMIC_PER_CHANNEL or plan.per_channel:
            return normalize_axis(channel_dim, ndim)
        return None

    def _refine(self, x: FloatArray, lo: Any, hi: Any, params: QParams, plan: LayerPlan) -> QParams:
        """enable_requantization: while the relative RMS error of the round trip exceeds the threshold, try a
        bounded list of narrower clip ranges (REQUANT_FACTORS of the range) and keep the best. Per tensor only."""
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
            if best_err <= self.config.requantization_threshold:
                break
            candidate = self._params_for_range(F32(lo) * F32(factor), F32(hi) * F32(factor), plan, None)
            err = rel_error(candidate)
            if err < best_err:
                best, best_err = candidate, err
        return best

    def _dynamic_params(self, x: FloatArray, plan: LayerPlan, axis: int | None, raw: tuple[Any, Any] | None = None
                        ) -> QParams:
        lo, hi = self._data_range(x, axis, *(raw if raw is not None else kernels.minmax(x, axis)))
        params = self._params_for_range(lo, hi, plan, axis)
        if self.config.enable_requantization:
            params = self._refine(x, lo, hi, params, plan)
        return params

    def _stored_params(self, plan: LayerPlan, shape: tuple[int, ...], channel_dim: int | None) -> QParams:
        state = self.state
        layer = state.layer_params.get(plan.layer_name) if plan.layer_name is not None else None
        if layer is not None:
            params = layer
        elif plan.per_channel and state.channel_params is not None:
            params = state.channel_params
        elif state.global_params is not None:
            params = state.global_params
        elif state.channel_params is not None:
            params = state.channel_params
        else:
            raise NotCalibratedError(
                f"this instance is in {self.config.quantization_mode.name} mode and has no parameters yet: "
                "calibrate it or import parameters first"
            )
        return self._fit(params, shape, channel_dim)

    @staticmethod
    def _fit(params: QParams, shape: tuple[int, ...], channel_dim: int | None) -> QParams:
        """Place per-channel parameters on the data's channel axis and check the channel count."""
        if params.axis is None:
            return params
        axis = normalize_axis(params.axis if channel_dim is None else channel_dim, len(shape))
        if shape[axis] != params.scale.size:
            raise InputError(
                f"the parameters hold {params.scale.size} channels but the data has {shape[axis]} along axis {axis}",
                field="channel_dim",
            )
        return dataclasses.replace(params, axis=axis)

    # ------------------------------------------------------------------ operations
    def quantize(
        self,
        data: npt.ArrayLike,
        *,
        validate: bool = True,
        channel_dim: int | None = None,
        layer_name: str | None = None,
    ) -> OpResult:
        return self._quantize(data, validate=validate, channel_dim=channel_dim, layer_name=layer_name,
                              dequantize_after=False)

    def quantize_dequantize(
        self,
        data: npt.ArrayLike,
        *,
        validate: bool = True,
        channel_dim: int | None = None,
        layer_name: str | None = None,
    ) -> OpResult:
        return self._quantize(data, validate=validate, channel_dim=channel_dim, layer_name=layer_name,
                              dequantize_after=True)

    def _quantize(
        self, data: npt.ArrayLike, *, validate: bool, channel_dim: int | None, layer_name: str | None,
        dequantize_after: bool,
    ) -> OpResult:
        started = time.perf_counter()
        x = self._as_float(data)
        if channel_dim is not None:
            normalize_axis(channel_dim, x.ndim)
        plan = self.layer_plan(layer_name)
        qtype = plan.effective_type
        delta = StatsDelta(total_values=int(x.size), quantize_calls=1, dequantize_calls=int(dequantize_after))
        dynamic = not self.config.quantization_mode.needs_parameters
        axis = self._dynamic_axis(plan, x.ndim, channel_dim) if dynamic else None

        if dynamic and qtype.is_integer:
            lo, hi = kernels.minmax(x, axis)  # the range pass, which also reveals NaN / Inf for free
        elif validate:
            lo, hi = kernels.minmax(x, self._frozen_axis(plan, x.shape, channel_dim))  # one pass for both
        else:
            # Not validated, yet NaN must still get the zero point's code, never an arbitrary one: the kernel
            # finds NaN itself (nan_to_zero_point=None), one reduction per block in cache, not a pass over memory.
            lo = hi = F32(0)
        has_nonfinite = not (np.isfinite(lo).all() and np.isfinite(hi).all())
        nonfinite = self._check_finite(x, validate=validate, lo=lo, hi=hi)

        if not qtype.is_integer:
            out, overflowed = self._cast(x, qtype, dequantize_after)
            if validate:
                delta.clipped_values = nonfinite + overflowed
            return self._finish(OpResult(out, qtype, None, delta, plan), started)

        params = (self._dynamic_params(x, plan, axis, (lo, hi)) if dynamic
                  else self._stored_params(plan, x.shape, channel_dim))
        qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
        # optimize_memory: fake quantization overwrites the caller's own float32 buffer (no second array).
        in_place = (self.config.optimize_memory and dequantize_after and x is data and x.flags.writeable
                    and x.flags.c_contiguous)
        out, clipped = kernels.quantize_counted(
            x, params, qmin, qmax, STORAGE_DTYPES[plan.quantization_type],
            nan_to_zero_point=has_nonfinite if dynamic or validate else None, workspace=self._workspace(),
            dequantize_after=dequantize_after,
            count_clipped=validate and self._may_clip(params, qmin, qmax, lo, hi, nonfinite),
            out=x if in_place else None,
        )
        if validate:
            delta.clipped_values = clipped
        self.last_params = params
        return self._finish(OpResult(out, qtype, params, delta, plan), started)

    def _frozen_axis(self, plan: LayerPlan, shape: tuple[int, ...], channel_dim: int | None) -> int | None:
        """The channel axis of the frozen parameters this call will use, if they are per channel: the validation
        pass then takes one min/max per channel, so that `_may_clip` can rule clipping out channel by channel."""
        if not (self.config.quantization_mode.needs_parameters and plan.effective_type.is_integer):
            return None
        try:
            return self._stored_params(plan, shape, channel_dim).axis
        except (NotCalibratedError, InputError):
            return None  # raised in its turn further on, after the NaN / Inf checks, as before

    @staticmethod
    def _may_clip(params: QParams, qmin: int, qmax: int, lo: Any, hi: Any, nonfinite: int) -> bool:
        """Can any element clip? x -> rint(x/s) + zp is monotone: if the extremes (global, or one pair per channel
        of `params`) do not clip, nothing does. When they might, the quantize kernel counts in the same pass."""
        if nonfinite or np.size(lo) not in (1, params.scale.size):
            return True
        ends_lo = kernels.code_of(np.asarray(lo, F32), params)
        ends_hi = kernels.code_of(np.asarray(hi, F32), params)
        return not (bool(np.all(ends_lo >= qmin)) and bool(np.all(ends_hi <= qmax)))

    @staticmethod
    def _cast(x: FloatArray, qtype: QuantizationType, dequantize_after: bool) -> tuple[npt.NDArray[Any], int]:
        """FLOAT16: round to nearest even, saturating at +-65504 like the integer types saturate (a response never
        holds an infinity); NaN (when allowed) becomes 0. Returns the result and how many finite values overflowed.
        NONE: the identity."""
        if qtype is not QuantizationType.FLOAT16:
            return x.copy(), 0
        with np.errstate(over="ignore", invalid="ignore"):
            half = x.astype(np.float16)
        overflow = np.isinf(half)
        overflowed = int(np.count_nonzero(overflow & np.isfinite(x))) if overflow.any() else 0
        half_max = np.finfo(np.float16).max
        np.clip(half, -half_max, half_max, out=half)
        np.nan_to_num(half, copy=False, nan=0.0)
        return (half.astype(F32) if dequantize_after else half), overflowed

    def dequantize(
        self, data: npt.ArrayLike, *, channel_dim: int | None = None, layer_name: str | None = None
    ) -> OpResult:
        started = time.perf_counter()
        plan = self.layer_plan(layer_name)
        qtype = plan.effective_type
        delta = StatsDelta(dequantize_calls=1)
        arr = np.asarray(data)
        if arr.ndim == 0 or arr.size == 0:
            raise InputError("data must be a non-empty array", field="data")
        if channel_dim is not None:
            normalize_axis(channel_dim, arr.ndim)
        if not qtype.is_integer:
            x = self._as_float(arr)
            if qtype is QuantizationType.FLOAT16:
                outside = int(np.count_nonzero(np.abs(x) > np.finfo(np.float16).max))
                if outside:
                    raise InputError(f"{outside} value(s) are outside the float16 range (+-65504)", field="data",
                                     code="input.code_out_of_range")
                out = x.astype(np.float16).astype(F32)
            else:
                out = x.copy()
            return self._finish(OpResult(out, qtype, None, delta, plan), started)

        qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
        codes = self._codes(arr, qmin, qmax)
        if self.config.quantization_mode.needs_parameters:
            params = self._stored_params(plan, codes.shape, channel_dim)
        elif self.last_params is not None:
            params = self._fit(self.last_params, codes.shape, channel_dim)
        elif self.state.is_calibrated:
            params = self._stored_params(plan, codes.shape, channel_dim)
        else:
            raise NotCalibratedError(
                "nothing to dequantize with: quantize some data first (dynamic mode dequantizes with the "
                "parameters of the most recent quantize), or calibrate or import parameters"
            )
        out = self._dequantize_cached(codes, params, plan, delta)
        return self._finish(OpResult(out, qtype, params, delta, plan), started)

    @staticmethod
    def _codes(arr: npt.NDArray[Any], qmin: int, qmax: int) -> npt.NDArray[Any]:
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
            raise InputError("dequantize data must be integer codes", field="data")
        if arr.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                if not np.isfinite(arr).all() or not np.array_equal(arr, np.rint(arr)):
                    raise InputError("dequantize data must be integer codes", field="data")
        lo, hi = kernels.minmax(arr)  # one pass for both
        if lo < qmin or hi > qmax:
            outside = int(np.count_nonzero((arr < qmin) | (arr > qmax)))
            raise InputError(f"{outside} code(s) are outside the type's range [{qmin}, {qmax}]", field="data",
                             code="input.code_out_of_range")
        small = np.int16 if qmin >= -32768 and qmax <= 32767 else np.int32
        return np.ascontiguousarray(arr, dtype=small if arr.dtype.kind == "f" or arr.dtype.itemsize > 2 else None)

    def _dequantize_cached(self, codes: npt.NDArray[Any], params: QParams, plan: LayerPlan,
                           delta: StatsDelta) -> FloatArray:
        if not (self.config.enable_cache and self._cache.accepts(codes)):
            return kernels.dequantize(codes, params, workspace=self._workspace())
        key = cache_key(codes, params, plan.quantization_type.name)
        hit = self._cache.get(key)
        if hit is not None:
            delta.cache_hits = 1
            return hit
        delta.cache_misses = 1
        return self._cache.put(key, kernels.dequantize(codes, params, workspace=self._workspace()))

    def compute_params(
        self,
        data: npt.ArrayLike,
        *,
        channel_idx: int | None = None,
        channel_dim: int | None = None,
        layer_name: str | None = None,
    ) -> QParams:
        """Scale and zero point the data would get, without quantizing and without changing the instance.

        With `channel_idx`: the parameters of that slice along `channel_dim` (default 0). Without it: one pair
        per channel for a per-channel layer (or a per-channel / per-batch mode), a single pair otherwise.
        """
        x = self._as_float(data)
        if channel_dim is not None:
            normalize_axis(channel_dim, x.ndim)
        plan = self.layer_plan(layer_name)
        lo, hi = kernels.minmax(x)
        self._check_finite(x, validate=True, lo=lo, hi=hi)
        if not plan.effective_type.is_integer:
            return QParams.identity()
        if channel_idx is not None:
            axis = normalize_axis(channel_dim, x.ndim)
            if (isinstance(channel_idx, bool) or not isinstance(channel_idx, (int, np.integer))
                    or not -x.shape[axis] <= channel_idx < x.shape[axis]):
                raise InputError(
                    f"channel_idx {channel_idx} is out of range: the data has {x.shape[axis]} channels along "
                    f"axis {axis}", field="channel_idx")
            return self._dynamic_params(np.take(x, channel_idx, axis=axis), plan, None)
        dynamic_axis = self._dynamic_axis(plan, x.ndim, channel_dim)
        # Per tensor, the extremes just taken are the range's: no second pass over the data.
        return self._dynamic_params(x, plan, dynamic_axis, (lo, hi) if dynamic_axis is None else None)

    def calibrate(self, batches: Iterable[npt.ArrayLike], *, channel_dim: int | None = None) -> QParams:
        """Calibrate from representative batches (any number, any shape) and switch to CALIBRATED mode.

        Per-channel instances calibrate one range per channel along `channel_dim` (default 0). Memory is bounded:
        only running statistics are kept.
        """
        plan = self.layer_plan(None)
        if not plan.quantization_type.is_integer:
            raise InputError(f"{plan.quantization_type.name} has no scale or zero point to calibrate",
                             field="quantization_type")
        qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
        symmetric = plan.symmetric or self.config.quantization_mode is QuantizationMode.SYMMETRIC
        collector: RangeCollector | None = None
        axis: int | None = None
        for batch in batches:
            x = self._as_float(batch)
            if collector is None:
                axis = normalize_axis(channel_dim, x.ndim) if plan.per_channel else None
                collector = RangeCollector(
                    self.config.calibration_method, axis=axis, symmetric=symmetric, qmin=qmin, qmax=qmax,
                    min_percentile=self.config.min_percentile, max_percentile=self.config.max_percentile,
                )
            elif axis is not None and x.ndim <= axis:
                raise InputError("calibration batches disagree on their number of dimensions", field="data")
            lo, hi = kernels.minmax(x)
            if self._check_finite(x, validate=True, lo=lo, hi=hi):
                x = np.where(np.isfinite(x), x, F32(0))
            collector.update(x)
        if collector is None:
            raise InputError("calibration needs at least one batch", field="data")
        lo_r, hi_r = collector.compute_range()
        params = self._params_for_range(lo_r, hi_r, plan, axis)
        state = self.state
        if axis is None:
            state.global_params, state.channel_params = params, None
        else:
            state.channel_params = params
            g_lo, g_hi = np.min(lo_r), np.max(hi_r)
            state.global_params = self._params_for_range(g_lo, g_hi, plan, None)
        state.is_calibrated = True
        state.calibration = {
            "method": self.config.calibration_method.name,
            "batches": collector.batches,
            "elements": collector.elements,
            "range_min": np.asarray(lo_r, F32).tolist(),
            "range_max": np.asarray(hi_r, F32).tolist(),
        }
        self.config = self.config.replace(quantization_mode=QuantizationMode.CALIBRATED)
        self._cache.clear()
        return params

    # ------------------------------------------------------------------ parameters, stats, cache
    def export_parameters(self) -> dict[str, Any]:
        return export_state(self.state, self.config)

    def import_parameters(self, data: Mapping[str, Any]) -> None:
        """Validate everything first, then apply: an invalid import changes nothing."""
        new_state, new_config = import_state(data, self.state, self.config)
        self.state, self.config = new_state, new_config
        self._cache.clear()

    def get_layer_params(self, layer_name: str) -> dict[str, Any]:
        """What a layer would get: its type, bits, symmetry, skip decision and parameters (if any are stored)."""
        plan = self.layer_plan(layer_name)
        out = plan.to_dict()
        qmin, qmax = qrange(plan.quantization_type, plan.num_bits) if plan.effective_type.is_integer else (None, None)
        out["qmin"], out["qmax"] = qmin, qmax
        params: QParams | None = None
        source = None
        if plan.effective_type.is_integer:
            if layer_name in self.state.layer_params:
                params, source = self.state.layer_params[layer_name], "layer"
            elif plan.per_channel and self.state.channel_params is not None:
                params, source = self.state.channel_params, "calibrated"
            elif self.state.global_params is not None:
                params, source = self.state.global_params, "calibrated"
        if params is None:
            out.update(scale=None, zero_point=None, channel_dim=None, parameters_source=(
                "identity" if not plan.effective_type.is_integer else "dynamic"))
        else:
            d = params.to_dict()
            out.update(scale=d["scale"], zero_point=d["zero_point"], channel_dim=d["axis"], parameters_source=source)
        return out

    def reset_stats(self) -> None:
        self.stats = Stats()

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_entries(self) -> int:
        return len(self._cache)
