"""The Quantizer: one configured instance with its parameters, statistics and dequantization cache.

Modes (`QuantizationConfig.quantization_mode`):
- DYNAMIC: parameters from each call's data (per tensor, or per channel along `channel_dim` when `per_channel`);
- SYMMETRIC: as DYNAMIC with symmetric parameters forced;
- DYNAMIC_PER_BATCH: parameters per sample along the leading axis, so each row of a batch has its own;
- DYNAMIC_PER_CHANNEL: parameters per channel along `channel_dim`, whatever `per_channel` says;
- STATIC, CALIBRATED: frozen parameters from `calibrate` or `import_parameters`; using them before either is a
  NotCalibratedError, never a silent scale of 1.0.
In the dynamic modes, dequantize uses the parameters of the most recent quantize: those the caller passes as
`last_params` (a web layer keeps them in its database, so that every worker uses the same), or else this
object's own latest quantize; without any it is a NotCalibratedError unless calibrated or imported parameters
exist. Explicit `scale` / `zero_point` win over everything stored.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from . import formats, kernels, ranges, small
from .cache import DequantCache, cache_key
from .calibration import HISTOGRAM_METHODS, NUM_BINS, RangeCollector
from .casts import as_float, cast, checked_codes, uncast
from .config import QuantizationConfig, QuantizationMode, QuantizationType
from .errors import InputError, LimitError, NotCalibratedError
from .layers import LayerPlan, resolve_layer
from .metrics import QualityStats, Stats, StatsDelta
from .parameters import ParameterState, applicable_params, explicit_params, export_state, import_state, parse_state
from .qparams import STORAGE_DTYPES, QParams, qrange
from .quality import QualityReport, quality_report, report_from_sums
from .ranges import normalize_axis

F32 = np.float32
FloatArray = npt.NDArray[np.float32]

MAX_HISTOGRAM_CELLS = 1 << 24  # calibration: channels or blocks x histogram bins (8 bytes each: 128 MiB)
MAX_HISTOGRAMS = MAX_HISTOGRAM_CELLS // NUM_BINS  # channels or blocks a histogram calibration holds at once
_OWN = object()  # dequantize's default last_params: this object's own latest quantize

MSG_CHANNEL_DIM = ("channel_dim applies to per-channel quantization only, and this {what} quantizes per tensor: "
                   "leave it out (or null), or set per_channel to true")


@dataclasses.dataclass
class OpResult:
    """The outcome of one engine call: the array, what was used, and what it adds to the statistics."""

    data: npt.NDArray[Any]
    quantization_type: QuantizationType
    params: QParams | None
    delta: StatsDelta
    plan: LayerPlan
    report: QualityReport | None = None  # with `report=True`: what the quantization cost (see engine.quality)


class Quantizer:
    """A quantizer instance. Not thread-safe for writes; the kernels' work buffer is per thread."""

    def __init__(
        self, config: QuantizationConfig | None = None, *, parameters: Mapping[str, Any] | None = None
    ) -> None:
        self.config = config or QuantizationConfig()
        self.state = ParameterState()
        self.stats = Stats()
        self.quality = QualityStats()
        self._last_params: QParams | None = None
        self._own_plan: tuple[QuantizationConfig, LayerPlan] | None = None  # layer_plan(None) of that config
        self._cache = DequantCache(self.config.cache_size if self.config.enable_cache else 0)
        if parameters:
            self.import_parameters(parameters)

    @classmethod
    def restore(cls, config: QuantizationConfig, stored: Mapping[str, Any]) -> Quantizer:
        """An engine object from stored state: parameters as export_parameters wrote them, with the config they
        were stored with (an import would switch a dynamic instance to CALIBRATED; a restore changes nothing).
        Raises ParameterError when they do not fit the config."""
        quantizer = cls(config)
        quantizer.state = parse_state({k: v for k, v in stored.items() if v is not None}, ParameterState(), config)
        return quantizer

    # ------------------------------------------------------------------ helpers
    def layer_plan(self, layer_name: str | None) -> LayerPlan:
        if layer_name is not None:
            return resolve_layer(self.config, layer_name)
        # Most calls name no layer: their plan is kept while the (frozen) config is the same object.
        if self._own_plan is None or self._own_plan[0] is not self.config:
            self._own_plan = (self.config, resolve_layer(self.config, None))
        return self._own_plan[1]

    def _finish(self, result: OpResult, started: float, report_of: FloatArray | None = None,
                sums: kernels.Sums | None = None) -> OpResult:
        """Complete the statistics of `result`; with `report_of` (the input), add its quality report (from the
        quantize kernel's `sums` when it took them)."""
        if report_of is not None:
            result.report = _report(report_of, result, sums)
            self.quality.add(result.report)
        result.delta.processing_time_ms = (time.perf_counter() - started) * 1000.0
        if result.params is not None:
            result.delta.last_scale, result.delta.last_zero_point = result.params.first()
        self.stats.add(result.delta)
        return result

    def _check_finite(self, x: FloatArray, *, validate: bool, lo: Any, hi: Any) -> int:
        """Apply error_on_nan / error_on_inf from a min/max already computed; return non-finite count allowed."""
        if not validate or small.all_finite(lo, hi):
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

    def _check_channel_dim(self, channel_dim: int | None, plan: LayerPlan, params: QParams | None,
                           what: str = "instance") -> None:
        """A channel_dim is refused where nothing is per channel, rather than ignored."""
        if channel_dim is None:
            return
        mode = self.config.quantization_mode
        per_channel = plan.per_channel or mode is QuantizationMode.DYNAMIC_PER_CHANNEL or (
            params is not None and params.axis is not None and mode is not QuantizationMode.DYNAMIC_PER_BATCH)
        if not per_channel:
            raise InputError(MSG_CHANNEL_DIM.format(what=what), field="channel_dim", code="input.channel_dim")

    # ------------------------------------------------------------------ parameters
    def _stored_params(self, plan: LayerPlan, shape: tuple[int, ...], channel_dim: int | None) -> QParams:
        found = applicable_params(self.state, plan)
        if found is None:
            raise NotCalibratedError(
                f"this instance is in {self.config.quantization_mode.name} mode and has no parameters yet: "
                "calibrate it or import parameters first"
            )
        return self._fit(found[0], shape, channel_dim)

    @staticmethod
    def _fit(params: QParams, shape: tuple[int, ...], channel_dim: int | None) -> QParams:
        """Place per-channel parameters on the data's channel axis and check the channel count (per block: the
        parameters' shape against the data's)."""
        if params.axis is None:
            return params
        if params.block_size is not None:
            axis = normalize_axis(params.axis if channel_dim is None else channel_dim, len(shape))
            expected = formats.block_shape(shape, axis, params.block_size) if len(shape) == params.scale.ndim else None
            if expected != params.scale.shape:
                raise InputError(
                    f"the block parameters have shape {list(params.scale.shape)} but data of shape {list(shape)} "
                    f"in blocks of {params.block_size} along axis {axis} needs {list(expected or ())}",
                    field="channel_dim")
            return dataclasses.replace(params, axis=axis)
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
        report: bool = False,
    ) -> OpResult:
        return self._quantize(data, validate=validate, channel_dim=channel_dim, layer_name=layer_name,
                              dequantize_after=False, report=report)

    def quantize_dequantize(
        self,
        data: npt.ArrayLike,
        *,
        validate: bool = True,
        channel_dim: int | None = None,
        layer_name: str | None = None,
        report: bool = False,
    ) -> OpResult:
        return self._quantize(data, validate=validate, channel_dim=channel_dim, layer_name=layer_name,
                              dequantize_after=True, report=report)

    def _quantize(
        self, data: npt.ArrayLike, *, validate: bool, channel_dim: int | None, layer_name: str | None,
        dequantize_after: bool, report: bool = False,
    ) -> OpResult:
        """With `report`, the result carries a QualityReport; a report needs the clipped count, which only a
        validated call counts, so `report` implies `validate`."""
        started = time.perf_counter()
        x = as_float(data)
        validate = validate or report
        report_of = x if report else None
        if channel_dim is not None:
            normalize_axis(channel_dim, x.ndim)
        plan = self.layer_plan(layer_name)
        qtype = plan.effective_type
        delta = StatsDelta(total_values=int(x.size), quantize_calls=1, dequantize_calls=int(dequantize_after))
        if qtype is QuantizationType.BFLOAT16:
            # The cast counts the non-finite values in its pass: the NaN / Inf checks need no pass of their own.
            self._check_channel_dim(channel_dim, plan, None)
            out, overflowed, special = formats.to_bfloat16(x)
            nonfinite = self._check_finite(x, validate=validate, lo=F32(np.nan if special else 0), hi=F32(0))
            if validate:
                delta.clipped_values = nonfinite + overflowed
            return self._finish(OpResult(out, qtype, None, delta, plan), started, report_of)
        dynamic = not self.config.quantization_mode.needs_parameters
        scaled = qtype.is_integer or qtype.is_float8
        if not scaled:
            self._check_channel_dim(channel_dim, plan, None)
            lo, hi = kernels.minmax(x) if validate else (F32(0), F32(0))
            nonfinite = self._check_finite(x, validate=validate, lo=lo, hi=hi)
            out, overflowed = cast(x, qtype, dequantize_after)
            if validate:
                delta.clipped_values = nonfinite + overflowed
            return self._finish(OpResult(out, qtype, None, delta, plan), started, report_of)

        group = self.config.group_size
        gaxis = normalize_axis(-1 if channel_dim is None else channel_dim, x.ndim) if group else None
        # optimize_memory: fake quantization overwrites the caller's own float32 buffer (no second array).
        # A report compares with the input afterwards: never in place then.
        in_place = (self.config.optimize_memory and dequantize_after and not report and x is data
                    and x.flags.writeable and x.flags.c_contiguous)
        # Dynamic integer blocks, and channels that are contiguous runs: each block's (channel's) range, parameters
        # and codes in one pass (channels: the report's sums too), when the data is finite and none needs the
        # float64 fallback (else None: the range pass, then the codes). Not in place: a block that turns it down
        # would find the ones before it already overwritten. A small per-tensor array likewise, the report's sums
        # included (engine/small.py).
        axis = ranges.dynamic_axis(self.config, plan, x.ndim, channel_dim) if dynamic and gaxis is None else None
        fused: tuple[npt.NDArray[Any], int, QParams, kernels.Sums | None] | None = None
        if dynamic and qtype.is_integer and not in_place:
            if gaxis is not None and not report:
                blocks = ranges.quantize_blocks(self.config, x, plan, gaxis, dequantize_after)
                fused = None if blocks is None else (*blocks, None)
            elif axis is not None:
                fused = ranges.quantize_channels(self.config, x, plan, axis, dequantize_after, report)
            elif gaxis is None and axis is None:
                fused = small.quantize_dynamic(self.config, x, plan, dequantize_after, report)
        if fused is not None:
            params = fused[2]
        elif dynamic:
            # The range pass (per tensor, channel or block), which also reveals NaN / Inf.
            if gaxis is not None:
                symmetric = plan.symmetric or self.config.quantization_mode is QuantizationMode.SYMMETRIC
                raw = formats.block_minmax(x, gaxis, group, raw=True, absolute=symmetric or qtype.is_float8)
                lo, hi = F32(np.min(raw[0])), F32(np.max(raw[1]))
                params = ranges.block_params(self.config, x, plan, gaxis, raw)
            else:
                lo, hi = kernels.minmax(x, axis)
                params = small.dynamic_params(self.config, x, plan, axis, (lo, hi))
            self._check_finite(x, validate=validate, lo=lo, hi=hi)
        else:
            params = self._stored_params(plan, x.shape, channel_dim)
        if group and params.block_size is None:
            raise InputError("this grouped instance's stored parameters are not per block", field="data")
        if not group and params.block_size is not None:
            raise InputError("block parameters need a grouped instance (group_size > 0)", field="data")
        if not group:
            self._check_channel_dim(channel_dim, plan, params)
        if validate and not dynamic and in_place:  # the input is about to be overwritten: check it first
            lo, hi = kernels.minmax(x)
            self._check_finite(x, validate=True, lo=lo, hi=hi)
        if fused is not None:
            out, clipped, _, sums = fused
        else:
            out, clipped, sums = self._quantize_kernel(x, params, plan, dequantize_after, x if in_place else None,
                                                       report)
        if validate and clipped and not dynamic and not in_place:
            # NaN and Inf always clip: only when something clipped can there be any (error_on_nan / error_on_inf
            # then refuse the call, and its answer is dropped).
            lo, hi = kernels.minmax(x)
            self._check_finite(x, validate=True, lo=lo, hi=hi)
        if validate:
            delta.clipped_values = clipped
        self._last_params = params
        return self._finish(OpResult(out, qtype, params, delta, plan), started, report_of, sums)

    @staticmethod
    def _quantize_kernel(x: FloatArray, params: QParams, plan: LayerPlan, dequantize_after: bool,
                         out: FloatArray | None, report: bool) -> tuple[npt.NDArray[Any], int, kernels.Sums | None]:
        """One pass: the codes (float8 values; fake: the dequantized values), the clipped count (integer
        codes outside the type's range, float8 values beyond max; NaN and +-inf always) and with `report` the
        quality report's sums."""
        qtype = plan.quantization_type
        with np.errstate(over="ignore"):  # a huge scale dequantizes to +-inf: an answer (see dequantize)
            if qtype.is_float8:
                return formats.quantize_fp8(x, params.scale, params.axis, params.block_size, _fp8_name(qtype),
                                            dequantize_after, report)
            qmin, qmax = qrange(qtype, plan.num_bits)
            if small.applies(x, params, report):
                return small.quantize(x, params, qmin, qmax, STORAGE_DTYPES[qtype], dequantize_after, out, report)
            if params.block_size is not None:
                assert params.axis is not None
                return formats.quantize_blocked(x, params.scale, params.zero_point, params.axis, params.block_size,
                                                qmin, qmax, STORAGE_DTYPES[qtype], dequantize_after, True, report)
            return kernels.quantize_counted(x, params, qmin, qmax, STORAGE_DTYPES[qtype],
                                            dequantize_after=dequantize_after, count_clipped=True, out=out,
                                            report=report)

    def dequantize(
        self,
        data: npt.ArrayLike,
        *,
        channel_dim: int | None = None,
        layer_name: str | None = None,
        scale: Any = None,
        zero_point: Any = None,
        last_params: QParams | object | None = _OWN,
    ) -> OpResult:
        """Codes back to float32. The parameters, first found wins: the explicit `scale` / `zero_point` (numbers,
        or lists with `channel_dim` for per-channel codes; zero_point defaults to 0 as in ONNX DequantizeLinear);
        the stored ones in STATIC / CALIBRATED modes; in dynamic modes those of the latest quantize (`last_params`
        when given, None meaning there was none; else this object's own); then stored calibrated ones."""
        started = time.perf_counter()
        plan = self.layer_plan(layer_name)
        qtype = plan.effective_type
        delta = StatsDelta(dequantize_calls=1)
        arr = np.asarray(data)
        if arr.ndim == 0 or arr.size == 0:
            raise InputError("data must be a non-empty array", field="data")
        # The bit patterns of the wire formats: a uint8 array given to a float8 layer, a uint16 array given to a
        # BFLOAT16 layer (what a binary quantize answer carries); values in any other dtype.
        if qtype.is_float8 and arr.dtype == np.uint8:
            arr = formats.fp8_decode(arr, _fp8_name(qtype))
        elif qtype is QuantizationType.BFLOAT16 and arr.dtype == np.uint16:
            arr = formats.bf16_decode(arr)
        if channel_dim is not None:
            normalize_axis(channel_dim, arr.ndim)
        if not (qtype.is_integer or qtype.is_float8):
            if scale is not None or zero_point is not None:
                raise InputError(f"a {qtype.name} layer has no scale or zero point to dequantize with",
                                 field="scale" if scale is not None else "zero_point")
            self._check_channel_dim(channel_dim, plan, None)
            if qtype is QuantizationType.BFLOAT16:
                values = as_float(arr)
                if not bool(np.all(formats.is_bfloat16(values))):
                    raise InputError("dequantize data of a BFLOAT16 layer must be bfloat16 values", field="data",
                                     code="input.code_out_of_range")
                return self._finish(OpResult(values.copy(), qtype, None, delta, plan), started)
            return self._finish(OpResult(uncast(as_float(arr), qtype), qtype, None, delta, plan), started)

        if qtype.is_float8:
            qmin = qmax = 0  # no zero point: only 0 is accepted
            codes = as_float(arr)
            bad = int(np.count_nonzero(~formats.is_fp8(codes, _fp8_name(qtype))))
            if bad:
                raise InputError(f"{bad} value(s) are not finite {qtype.name} values", field="data",
                                 code="input.code_out_of_range")
        else:
            qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
            codes = checked_codes(arr, qmin, qmax)
        latest = self._last_params if last_params is _OWN else last_params
        if scale is not None or zero_point is not None:
            params = self._fit(explicit_params(scale, zero_point, channel_dim, qmin, qmax), codes.shape, channel_dim)
        elif self.config.quantization_mode.needs_parameters:
            params = self._stored_params(plan, codes.shape, channel_dim)
        elif isinstance(latest, QParams):
            params = self._fit(latest, codes.shape, channel_dim)
        elif self.state.is_calibrated:
            params = self._stored_params(plan, codes.shape, channel_dim)
        else:
            raise NotCalibratedError(
                "nothing to dequantize with: quantize some data first (dynamic mode dequantizes with the "
                "parameters of the most recent quantize), give scale and zero_point, or calibrate or import "
                "parameters"
            )
        if params.block_size is None:
            self._check_channel_dim(channel_dim, plan, params)
        out = self._dequantize_cached(codes, params, plan, delta)
        return self._finish(OpResult(out, qtype, params, delta, plan), started)

    def _dequantize_cached(self, codes: npt.NDArray[Any], params: QParams, plan: LayerPlan,
                           delta: StatsDelta) -> FloatArray:
        # (q - zp) * scale beyond the float32 range is +-inf, as in ONNX Runtime: the caller decides whether its
        # format can carry it (JSON cannot, .npy can).
        with np.errstate(over="ignore"):
            return self._dequantize_kernel(codes, params, plan, delta)

    def _dequantize_kernel(self, codes: npt.NDArray[Any], params: QParams, plan: LayerPlan,
                           delta: StatsDelta) -> FloatArray:
        if not (self.config.enable_cache and self._cache.accepts(codes)):
            return kernels.dequantize(codes, params)
        key = cache_key(codes, params, plan.quantization_type.name)
        hit = self._cache.get(key)
        if hit is not None:
            delta.cache_hits = 1
            return hit
        delta.cache_misses = 1
        return self._cache.put(key, kernels.dequantize(codes, params))

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
        x = as_float(data)
        if channel_dim is not None:
            normalize_axis(channel_dim, x.ndim)
        plan = self.layer_plan(layer_name)
        lo, hi = kernels.minmax(x)
        self._check_finite(x, validate=True, lo=lo, hi=hi)
        if not (plan.effective_type.is_integer or plan.effective_type.is_float8):
            return QParams.identity()
        if self.config.group_size and channel_idx is None:
            return ranges.block_params(self.config, x, plan, normalize_axis(
                -1 if channel_dim is None else channel_dim, x.ndim))
        if channel_idx is not None:
            axis = normalize_axis(channel_dim, x.ndim)
            if (isinstance(channel_idx, bool) or not isinstance(channel_idx, (int, np.integer))
                    or not -x.shape[axis] <= channel_idx < x.shape[axis]):
                raise InputError(
                    f"channel_idx {channel_idx} is out of range: the data has {x.shape[axis]} channels along "
                    f"axis {axis}", field="channel_idx")
            return ranges.dynamic_params(self.config, np.take(x, channel_idx, axis=axis), plan, None)
        dynamic_axis = ranges.dynamic_axis(self.config, plan, x.ndim, channel_dim)
        if dynamic_axis is None:
            self._check_channel_dim(channel_dim, plan, None)
        # Per tensor, the extremes just taken are the range's: no second pass over the data.
        return ranges.dynamic_params(self.config, x, plan, dynamic_axis, (lo, hi) if dynamic_axis is None else None)

    def calibrate(self, batches: Iterable[npt.ArrayLike], *, channel_dim: int | None = None) -> QParams:
        """Calibrate from representative batches (any number, any shape) and switch to CALIBRATED mode.

        Per-channel instances calibrate one range per channel along `channel_dim` (default 0); grouped instances
        (group_size > 0) one range per block of `group_size` along `channel_dim` (default the last axis), as the
        blocks of quantize, so every batch has the shape of the data to come. Memory is bounded: only running
        statistics are kept.
        """
        plan = self.layer_plan(None)
        if not (plan.quantization_type.is_integer or plan.quantization_type.is_float8):
            raise InputError(f"{plan.quantization_type.name} has no scale or zero point to calibrate",
                             field="quantization_type")
        group = self.config.group_size
        if channel_dim is not None and not (plan.per_channel or group):
            raise InputError(MSG_CHANNEL_DIM.format(what="instance"), field="channel_dim", code="input.channel_dim")
        qmin, qmax = qrange(plan.quantization_type, plan.num_bits)
        symmetric = plan.symmetric or self.config.quantization_mode is QuantizationMode.SYMMETRIC
        collector: RangeCollector | None = None
        axis: int | None = None
        shape: tuple[int, ...] | None = None
        for batch in batches:
            x = as_float(batch)
            if collector is None:
                shape = x.shape
                if group:
                    axis = normalize_axis(-1 if channel_dim is None else channel_dim, x.ndim)
                elif plan.per_channel:
                    axis = normalize_axis(channel_dim, x.ndim)
                collector = RangeCollector(
                    self.config.calibration_method, axis=0 if group else axis, symmetric=symmetric, qmin=qmin,
                    qmax=qmax, min_percentile=self.config.min_percentile, max_percentile=self.config.max_percentile,
                )
            elif group and x.shape != shape:
                raise InputError(f"a grouped instance calibrates blocks of data of one shape: the first batch has "
                                 f"shape {list(shape or ())}, this one {list(x.shape)}", field="data")
            elif axis is not None and x.ndim <= axis:
                raise InputError("calibration batches disagree on their number of dimensions", field="data")
            lo, hi = kernels.minmax(x)
            if self._check_finite(x, validate=True, lo=lo, hi=hi):
                x = np.where(np.isfinite(x), x, F32(0))
            if group and axis is not None:
                x = formats.blocks_as_rows(x, axis, group)
                histograms, what, instead = x.shape[0], "blocks", "or larger groups"
            else:
                histograms, what, instead = 1 if axis is None else x.shape[axis], "channels", "or per tensor"
            if (self.config.calibration_method in HISTOGRAM_METHODS
                    and histograms > MAX_HISTOGRAMS):
                raise LimitError(
                    f"{histograms} {what} of {NUM_BINS}-bin histograms are too many for "
                    f"{self.config.calibration_method.name} calibration (at most {MAX_HISTOGRAMS}): "
                    f"use MINMAX or MOVING_AVERAGE, {instead}", field="calibration_method")
            collector.update(x)
        if collector is None or shape is None:
            raise InputError("calibration needs at least one batch", field="data")
        lo_r, hi_r = collector.compute_range()
        state = self.state
        if group and axis is not None:
            target = formats.block_shape(shape, axis, group)
            lo_r, hi_r = np.asarray(lo_r, F32).reshape(target), np.asarray(hi_r, F32).reshape(target)
            params = ranges.params_for_range(self.config, lo_r, hi_r, plan, axis, group)
            state.block_params = params
        else:
            params = ranges.params_for_range(self.config, lo_r, hi_r, plan, axis)
            state.block_params = None
        if group or axis is None:
            state.global_params, state.channel_params = (None if group else params), None
        else:
            state.channel_params = params
            state.global_params = ranges.params_for_range(self.config, np.min(lo_r), np.max(hi_r), plan, None)
        state.is_calibrated = True
        state.calibration = {
            "method": self.config.calibration_method.name,
            "batches": collector.batches,
            "elements": collector.elements,
            "range_min": np.asarray(lo_r, F32).tolist(),
            "range_max": np.asarray(hi_r, F32).tolist(),
            "histogram": collector.display_histogram(),
        }
        self.config = self.config.replace(quantization_mode=QuantizationMode.CALIBRATED)
        self._cache.clear()
        return params

    @property
    def last_params(self) -> QParams | None:
        """The parameters of this object's latest quantize (None before any)."""
        return self._last_params

    # ------------------------------------------------------------------ parameters, stats, cache
    def export_parameters(self) -> dict[str, Any]:
        return export_state(self.state, self.config)

    def import_parameters(self, data: Mapping[str, Any]) -> None:
        """Validate everything first, then apply: an invalid import changes nothing."""
        new_state, new_config = import_state(data, self.state, self.config)
        self.state, self.config = new_state, new_config
        self._cache.clear()

    def get_layer_params(self, layer_name: str) -> dict[str, Any]:
        """What a layer gets: its type, bits, symmetry and skip decision, the stored parameters that apply to it
        (by the same rule quantize follows) and whether quantize uses them (only STATIC and CALIBRATED do)."""
        plan = self.layer_plan(layer_name)
        out = plan.to_dict()
        integer = plan.effective_type.is_integer
        out["qmin"], out["qmax"] = qrange(plan.quantization_type, plan.num_bits) if integer else (None, None)
        found = applicable_params(self.state, plan)
        if found is None:
            out.update(scale=None, zero_point=None, channel_dim=None, used_by_quantize=False,
                       parameters_source="identity" if not integer else (
                           "none" if self.config.quantization_mode.needs_parameters else "dynamic"))
            return out
        params, source = found
        d = params.to_dict()
        out.update(scale=d["scale"], zero_point=d["zero_point"], channel_dim=d["axis"], parameters_source=source,
                   used_by_quantize=self.config.quantization_mode.needs_parameters)
        return out

    def reset_stats(self) -> None:
        self.stats = Stats()
        self.quality = QualityStats()

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_entries(self) -> int:
        return len(self._cache)


def _report(x: FloatArray, result: OpResult, sums: kernels.Sums | None) -> QualityReport:
    """The quality report of a quantize result against its input `x`, compared with the exact dequantized
    values: the quantize kernel's own sums (taken in its pass) when they are finite; else, and for the casts,
    the answer itself when it is dequantized values, or the codes dequantized as `dequantize` does. Per-channel
    parameters give per-channel SQNR along their axis; blocks are reported per tensor."""
    clipped, params, out = result.delta.clipped_values, result.params, result.data
    per_channel = params is not None and params.per_channel and params.block_size is None
    if sums is not None and sums.finite:
        return report_from_sums(sums, clipped, int(x.size), per_channel=per_channel)
    axis = params.axis if params is not None and per_channel else None
    if params is not None and not result.delta.dequantize_calls:
        with np.errstate(over="ignore"):
            out = kernels.dequantize(out, dataclasses.replace(params, zero_point=np.zeros_like(params.zero_point))
                                     if result.quantization_type.is_float8 else params)
    return quality_report(x, out, clipped, axis)


def _fp8_name(qtype: QuantizationType) -> str:
    return "e4m3fn" if qtype is QuantizationType.FP8_E4M3 else "e5m2"
