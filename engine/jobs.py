"""A model job: every tensor of a checkpoint through an instance's configuration, one tensor at a time, into a
checkpoint of the same format, with a report of what each tensor lost.

What happens to a tensor (its `action` in the report):
- not floating (integers, bool, float8), 0-d or empty: "kept", its bytes copied unchanged;
- the layer plan (engine/layers.py) skips it (skip_layers, quantize_bias, quantize_weights_only): "skipped",
  copied unchanged; a layer whose type is NONE: "kept";
- otherwise "quantized" with the layer's type, bits and symmetry. Per channel (a per-channel layer, or the
  DYNAMIC_PER_CHANNEL / DYNAMIC_PER_BATCH modes) means one scale per index along `channel_dim` (default 0, the
  output channels of a [out, in] weight); 1-D tensors (biases, norms) are quantized per tensor, since one scale
  per element would store more than it saves. A grouped instance (group_size) quantizes blocks along
  `channel_dim` (default the last axis), as the Quantizer does.
- The clip range of a weight is its own calibration: MINMAX (and MOVING_AVERAGE, which over one batch is the
  same) is the dynamic range the Quantizer takes (use_percentile and outlier_threshold apply); PERCENTILE, MSE
  and ENTROPY run the calibration collector (engine/calibration.py) over the weight and quantize with the
  resulting frozen parameters, counting what they clip. The instance's mode does not bring stored activation
  parameters to weights: STATIC and CALIBRATED instances calibrate each weight the same way; SYMMETRIC forces
  symmetric ranges.

Output, per quantized tensor: its codes under its own name in the type's dtype (I8 for INT8 and INT4, U8 for
UINT8 and UINT4: one 4-bit code per byte, as safetensors has no 4-bit dtype; I16; F8_E4M3 / F8_E5M2), its scale
under `<name>_scale` (F32) and, unless the type is signed and symmetric (zero point 0) or FP8 (none), its zero
point under `<name>_zero_point` in the codes' dtype. Scales are shaped to broadcast against the tensor, as
compressed-tensors shapes them: [1] per tensor, the tensor's rank with the channel count on the channel axis per
channel ([out, 1] for a 2-D weight along 0), ONNX's block shape per group. FLOAT16 and BFLOAT16 layers are F16 /
BF16 values, no scale. Kept and skipped tensors are byte-identical.

Report figures are the quantize's own quality report (engine/quality.py), taken in the same compiled pass as the
codes, against the float32 input with the exact dequantized values, (q - zp) * scale in float32 as dequantize
gives them: SQNR 10 log10(sum x^2 / sum (x - x^)^2) (None when the reconstruction is exact or the input all
zero), max and RMS error; the clipped count is the quantize's own.

Threads: a job's quantize and range passes split each tensor's rows over QUANTIZER_JOB_THREADS threads
(environment; default: every core of the machine, `os.cpu_count()`), through `engine.kernels.threads`; the codes
are the same bits whatever the count. Web requests never set it and stay on their worker's thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, BinaryIO, Final

import ml_dtypes
import numpy as np
import numpy.typing as npt

from . import formats, kernels
from .calibration import RangeCollector
from .checkpoint import BackgroundFile, CheckpointReader, TensorInfo, checkpoint_format, open_checkpoint, writer_for
from .config import CalibrationMethod, QuantizationConfig, QuantizationMode, QuantizationType
from .errors import CheckpointError, InputError, JobCancelled
from .jit import warm_kernels
from .layers import LayerPlan, resolve_layer
from .parameters import ParameterState
from .qparams import STORAGE_DTYPES, QParams, f32_float, qrange
from .quantizer import MAX_HISTOGRAMS, OpResult, Quantizer
from .ranges import normalize_axis, params_for_range
from .safetensors import DTYPES as SAFETENSORS_DTYPES
from .safetensors import FLOAT_DTYPES

F32 = np.float32
PRODUCER: Final = "quantsite"
PARTIAL_SUFFIX: Final = ".partial"
# Two tensors are in flight together only when their footprints fit in 2 x the largest tensor (one being written
# while the next is quantized), the largest go one at a time, so that with the writer's queue the peak stays
# within 2.5 x the largest tensor above the process's own baseline.
OVERLAP_FACTOR: Final = 2.0
HISTOGRAM_CHANNELS: Final = MAX_HISTOGRAMS  # per-channel histograms held at a time (calibration)
FORMAT_NOTE: Final = ("codes under the tensor's name (I8: INT8 and INT4, U8: UINT8 and UINT4, one code per byte; "
                      "I16; F8_E4M3 / F8_E5M2; F16 / BF16 values for FLOAT16 / BFLOAT16 layers); <name>_scale F32, "
                      "shaped to broadcast against the tensor; <name>_zero_point in the codes' dtype when not 0; "
                      "x = (q - zero_point) * scale")
_RANGE_METHODS: Final = (CalibrationMethod.PERCENTILE, CalibrationMethod.MSE, CalibrationMethod.ENTROPY)
_CODE_DTYPES: Final = {np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.int16): "I16"}
_FP8: Final = {QuantizationType.FP8_E4M3: ("F8_E4M3", ml_dtypes.float8_e4m3fn),
               QuantizationType.FP8_E5M2: ("F8_E5M2", ml_dtypes.float8_e5m2)}

OnTensor = Callable[["LayerReport", int], None]
ShouldCancel = Callable[[], bool]
Layout = list[tuple[str, str, tuple[int, ...]]]


@dataclasses.dataclass
class LayerReport:
    """One tensor's row of the report, plus the parameters a web layer stores (today's layer_params keys)."""

    name: str
    shape: list[int]
    dtype: str
    action: str  # "quantized" | "kept" | "skipped"
    quantization_type: str | None
    scheme: str | None  # "per_tensor" | "per_channel" | "per_group"
    channel_dim: int | None
    scale_min: float | None
    scale_max: float | None
    sqnr_db: float | None
    max_abs_error: float | None
    rms_error: float | None
    clipped: int | None
    values: int
    bytes_in: int
    bytes_out: int
    ms: float
    qparams: QParams | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def params(self) -> dict[str, Any] | None:
        """Today's layer_params entry {"scale", "zero_point", "channel_dim"} of an integer per-tensor or
        per-channel layer; None for what stored layer parameters cannot express (casts, FP8, blocks). Built when
        asked for: the shortest decimal of thousands of float32 scales takes milliseconds."""
        p = self.qparams
        if p is None or p.block_size is not None or self.quantization_type is None or \
                not QuantizationType[self.quantization_type].is_integer:
            return None
        d = p.to_dict()
        return {"scale": d["scale"], "zero_point": d["zero_point"], "channel_dim": d["axis"]}

    def to_dict(self) -> dict[str, Any]:
        """The report row (without the parameters)."""
        return {name: getattr(self, name) for name in REPORT_FIELDS}


REPORT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(LayerReport) if f.name != "qparams")


@dataclasses.dataclass(frozen=True)
class TensorPlan:
    """What the job does with one tensor, decided from the header before any data is read."""

    info: TensorInfo
    action: str
    reason: str
    layer: LayerPlan | None = None
    scheme: str | None = None  # None for the casts (FLOAT16, BFLOAT16) and for what is not quantized
    axis: int | None = None  # the channel axis (per channel) or the block axis (per group)
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...] = ()

    @property
    def qtype(self) -> QuantizationType:
        assert self.layer is not None
        return self.layer.quantization_type


def _is_floating(fmt: str, dtype: str) -> bool:
    return dtype in FLOAT_DTYPES if fmt == "safetensors" else np.dtype(dtype).kind == "f"


def plan_tensor(config: QuantizationConfig, info: TensorInfo, fmt: str, channel_dim: int | None) -> TensorPlan:
    kept = (info.name, info.dtype, info.shape)
    if not _is_floating(fmt, info.dtype):
        return TensorPlan(info, "kept", "not a floating-point tensor", outputs=(kept,))
    if not info.shape or 0 in info.shape:
        return TensorPlan(info, "kept", "a scalar or empty tensor", outputs=(kept,))
    layer = resolve_layer(config, info.name)
    if layer.skip:
        return TensorPlan(info, "skipped", layer.reason, layer, outputs=(kept,))
    qtype = layer.quantization_type
    if qtype is QuantizationType.NONE:
        return TensorPlan(info, "kept", "quantization type NONE", layer, outputs=(kept,))
    if qtype is QuantizationType.FLOAT16:
        return TensorPlan(info, "quantized", layer.reason, layer, outputs=((info.name, "F16", info.shape),))
    if qtype is QuantizationType.BFLOAT16:
        return TensorPlan(info, "quantized", layer.reason, layer, outputs=((info.name, "BF16", info.shape),))
    ndim = len(info.shape)
    mode = config.quantization_mode
    if config.group_size and not layer.per_channel:
        scheme, axis = "per_group", normalize_axis(-1 if channel_dim is None else channel_dim, ndim)
        pshape = formats.block_shape(info.shape, axis, config.group_size)
    elif ndim >= 2 and (layer.per_channel or mode in (QuantizationMode.DYNAMIC_PER_CHANNEL,
                                                      QuantizationMode.DYNAMIC_PER_BATCH)):
        scheme, axis = "per_channel", normalize_axis(channel_dim, ndim)
        pshape = tuple(n if i == axis else 1 for i, n in enumerate(info.shape))
    else:
        scheme, axis, pshape = "per_tensor", None, (1,)
    codes = _FP8[qtype][0] if qtype.is_float8 else _CODE_DTYPES[np.dtype(STORAGE_DTYPES[qtype])]
    outputs = [(info.name, codes, info.shape), (f"{info.name}_scale", "F32", pshape)]
    if _has_zero_point(config, layer):
        outputs.append((f"{info.name}_zero_point", codes, pshape))
    return TensorPlan(info, "quantized", layer.reason, layer, scheme, axis, tuple(outputs))


def _symmetric(config: QuantizationConfig, layer: LayerPlan) -> bool:
    return layer.symmetric or config.quantization_mode is QuantizationMode.SYMMETRIC


def _has_zero_point(config: QuantizationConfig, layer: LayerPlan) -> bool:
    """Integer codes carry a zero point unless it is 0 by construction (signed and symmetric)."""
    return layer.quantization_type.is_integer and (layer.quantization_type.is_unsigned or
                                                   not _symmetric(config, layer))


def plan_checkpoint(config: QuantizationConfig, tensors: tuple[TensorInfo, ...], fmt: str,
                    channel_dim: int | None) -> list[TensorPlan]:
    """Every tensor's plan; refuses a plan whose output names collide (a tensor named like another's scale)."""
    plans = [plan_tensor(config, t, fmt, channel_dim) for t in tensors]
    seen: set[str] = set()
    for p in plans:
        for name, _, _ in p.outputs:
            if name in seen:
                raise CheckpointError(f"the output would hold two tensors named {name!r}: a tensor of the "
                                      "checkpoint is named like another's scale or zero point",
                                      code="model.name_clash")
            seen.add(name)
    return plans


# ---------------------------------------------------------------------- the job
def quantize_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    config: QuantizationConfig,
    *,
    fmt: str | None = None,
    channel_dim: int | None = None,
    metadata: dict[str, str] | None = None,
    on_tensor: OnTensor | None = None,
    should_cancel: ShouldCancel | None = None,
    max_tensor_elements: int | None = None,
) -> list[LayerReport]:
    """Quantize the checkpoint `src` into `dst` (same format), one tensor at a time; returns the report rows in
    the file's order. `dst` appears only complete: the output goes to `dst` + ".partial", renamed at the end and
    removed on any failure or cancel (JobCancelled, raised when `should_cancel()` is true between tensors)."""
    fmt = fmt or checkpoint_format(os.fspath(src))
    dst = os.fspath(dst)
    partial = dst + PARTIAL_SUFFIX
    with open_checkpoint(src, fmt=fmt, max_tensor_elements=max_tensor_elements) as reader:
        plans = plan_checkpoint(config, reader.info.tensors, fmt, channel_dim)
        layout: Layout = [out for p in plans for out in p.outputs]
        try:
            with open(partial, "wb") as file:
                sink = BackgroundFile(file) if fmt == "safetensors" else file
                try:
                    reports = _run(reader, plans, _writer(fmt, sink, layout, reader, config, metadata), config,
                                   on_tensor, should_cancel)
                finally:
                    if isinstance(sink, BackgroundFile):
                        sink.finish()  # the writes end before the file closes, failed job or not
            os.replace(partial, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            raise
    return reports


def _writer(fmt: str, file: BinaryIO | BackgroundFile, layout: Layout, reader: CheckpointReader,
            config: QuantizationConfig, metadata: dict[str, str] | None) -> Any:
    meta = {**reader.metadata, "producer": PRODUCER, "quantization_config": json.dumps(config.to_dict(),
                                                                                       sort_keys=True),
            "quantsite_format": FORMAT_NOTE, **(metadata or {})}
    return writer_for(fmt, file, layout, meta)


def _run(reader: CheckpointReader, plans: list[TensorPlan], writer: Any, config: QuantizationConfig,
         on_tensor: OnTensor | None, should_cancel: ShouldCancel | None) -> list[LayerReport]:
    """Tensor by tensor, in the file's order; the reports come out, and `on_tensor` is called, in order."""
    budget = OVERLAP_FACTOR * max((p.info.nbytes for p in plans), default=0)
    quantizers = _Quantizers(config)
    reports: list[LayerReport] = []
    done = 0

    def finish(item: _Pending) -> None:
        nonlocal done
        report = item.report()
        reports.append(report)
        done += report.bytes_in
        if on_tensor is not None:
            on_tensor(report, done)

    pending: _Pending | None = None
    with kernels.threads(job_threads()):
        try:
            for plan in plans:
                if should_cancel is not None and should_cancel():
                    raise JobCancelled(f"the job was cancelled after {len(reports)} of {len(plans)} tensors")
                if pending is not None and pending.footprint + _footprint(plan) > budget:
                    finish(pending)  # the two would not fit together: this tensor waits
                    pending = None
                if plan.action == "quantized":
                    current = _quantize_tensor(reader, plan, writer, config, quantizers)
                else:
                    started = time.perf_counter()
                    with reader.tensor(plan.info.name) as raw:
                        written = writer.write(plan.info.name, raw)
                    current = _Pending(_plain_report(plan, written), started, footprint=_footprint(plan))
                if pending is not None:
                    finish(pending)
                pending = current
            if pending is not None:
                finish(pending)
                pending = None
        finally:
            if pending is not None:
                pending.abandon()
    writer.close()
    return reports


def job_threads() -> int:
    """QUANTIZER_JOB_THREADS (a positive integer), else every core."""
    value = os.environ.get("QUANTIZER_JOB_THREADS", "").strip()
    if not value:
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"QUANTIZER_JOB_THREADS must be a positive integer, not {value!r}")
    return count


class _Pending:
    """A tensor written, whose report is complete."""

    def __init__(self, report: LayerReport, started: float, footprint: int = 0) -> None:
        self._report = report
        self.footprint = footprint  # bytes it holds until its report is done
        report.ms = (time.perf_counter() - started) * 1000.0

    def report(self) -> LayerReport:
        return self._report

    def abandon(self) -> None:
        """Nothing is left running (kept for the loop's shape)."""


def _plain_report(plan: TensorPlan, written: int) -> LayerReport:
    info = plan.info
    return LayerReport(info.name, list(info.shape), info.dtype, plan.action, None, None, None, None, None, None,
                       None, None, None, math.prod(info.shape), info.nbytes, written, 0.0)


class _Quantizers:
    """One Quantizer per distinct layer plan, configured with that plan alone (type, bits, symmetry, channels),
    so that the engine's own quantize does each tensor exactly as a request naming the layer would."""

    def __init__(self, config: QuantizationConfig) -> None:
        self.config = config
        self._cache: dict[tuple[Any, ...], Quantizer] = {}

    def get(self, plan: TensorPlan, frozen: QParams | None = None) -> Quantizer:
        layer = plan.layer
        assert layer is not None
        key = (layer.quantization_type, layer.num_bits, _symmetric(self.config, layer), plan.scheme, frozen is None)
        quantizer = self._cache.get(key)
        if quantizer is None:
            flat = self.config.replace(
                quantization_type=layer.quantization_type, num_bits=layer.num_bits,
                symmetric=_symmetric(self.config, layer), per_channel=plan.scheme == "per_channel",
                group_size=self.config.group_size if plan.scheme == "per_group" else 0,
                quantization_mode=QuantizationMode.DYNAMIC if frozen is None else QuantizationMode.CALIBRATED,
                skip_layers=(), quantize_bias=True, quantize_weights_only=False, enable_mixed_precision=False,
                mixed_precision_layers=(), custom_quantization_config={}, enable_cache=False,
                optimize_memory=False)
            quantizer = self._cache[key] = Quantizer(flat)
        if frozen is not None:
            quantizer.state = ParameterState(is_calibrated=True, global_params=frozen if frozen.axis is None else None,
                                             channel_params=frozen if frozen.axis is not None else None)
        return quantizer


def _quantize_tensor(reader: CheckpointReader, plan: TensorPlan, writer: Any, config: QuantizationConfig,
                     quantizers: _Quantizers) -> _Pending:
    """Quantize and write one tensor, with its quality report from the same pass."""
    started = time.perf_counter()
    info = plan.info
    layer = plan.layer
    assert layer is not None
    with reader.float32(info.name) as x:
        frozen = None
        if plan.scheme in ("per_tensor", "per_channel") and config.calibration_method in _RANGE_METHODS:
            frozen = _calibrated_params(config, plan, x)
        result = quantizers.get(plan, frozen).quantize(x, channel_dim=plan.axis, report=True)
        outputs = _outputs(plan, result)
        written = sum(writer.write(name, arr) for (name, _, _), arr in zip(plan.outputs, outputs, strict=True))
    params = result.params
    scales = None if params is None else params.scale
    quality = result.report
    assert quality is not None
    compared = quality.values > 0
    report = LayerReport(
        info.name, list(info.shape), info.dtype, "quantized", layer.quantization_type.name, plan.scheme,
        plan.axis if plan.scheme in ("per_channel", "per_group") else None,
        None if scales is None else f32_float(np.min(scales)), None if scales is None else f32_float(np.max(scales)),
        quality.sqnr_db, quality.max_abs_error if compared else None, quality.rms_error if compared else None,
        int(result.delta.clipped_values), math.prod(info.shape), info.nbytes, written, 0.0, params)
    return _Pending(report, started, _footprint(plan))


def _footprint(plan: TensorPlan) -> int:
    """Bytes a tensor holds while it is processed: its float32 values (mapped, or converted), the quantizer's
    float32 results for the float types, and its outputs."""
    if plan.action != "quantized":
        return plan.info.nbytes
    values = math.prod(plan.info.shape)
    floats = 4 * values if plan.qtype.is_float8 or plan.qtype is QuantizationType.BFLOAT16 else 0
    outputs = sum(math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize for _, dtype, shape in plan.outputs)
    return 4 * values + floats + outputs


def _calibrated_params(config: QuantizationConfig, plan: TensorPlan, x: npt.NDArray[np.float32]) -> QParams:
    """The weight's own calibration with the configured method (a one-batch RangeCollector), as parameters."""
    layer = plan.layer
    assert layer is not None
    lo, hi = kernels.minmax(x)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        _check_nonfinite(config, x)
        x = np.where(np.isfinite(x), x, F32(0))
    qmin, qmax = qrange(layer.quantization_type, layer.num_bits)

    def calibrated(part: npt.NDArray[np.float32]) -> tuple[Any, Any]:
        collector = RangeCollector(config.calibration_method, axis=plan.axis, symmetric=_symmetric(config, layer),
                                   qmin=qmin, qmax=qmax, min_percentile=config.min_percentile,
                                   max_percentile=config.max_percentile)
        collector.update(part)
        return collector.compute_range()

    if plan.axis is None:
        rmin, rmax = calibrated(x)
    else:
        # Each channel's histogram (16 KiB) sees its own values only, so channels go HISTOGRAM_CHANNELS at a time:
        # the same ranges, and an embedding of 128k rows holds 128 MiB of histograms, not 2 GiB.
        ranges = [calibrated(x[(slice(None),) * plan.axis + (slice(c, c + HISTOGRAM_CHANNELS),)])
                  for c in range(0, x.shape[plan.axis], HISTOGRAM_CHANNELS)]
        rmin = np.concatenate([np.reshape(lo, -1) for lo, _ in ranges])
        rmax = np.concatenate([np.reshape(hi, -1) for _, hi in ranges])
    flat_layer = dataclasses.replace(layer, symmetric=_symmetric(config, layer))
    return params_for_range(config, rmin, rmax, flat_layer, plan.axis)


def _check_nonfinite(config: QuantizationConfig, x: npt.NDArray[np.float32]) -> None:
    n_nan = int(np.count_nonzero(np.isnan(x)))
    n_inf = int(np.count_nonzero(np.isinf(x)))
    if n_nan and config.error_on_nan:
        raise InputError(f"data contains {n_nan} NaN value(s) and error_on_nan is true", field="data",
                         code="input.nan")
    if n_inf and config.error_on_inf:
        raise InputError(f"data contains {n_inf} infinite value(s) and error_on_inf is true", field="data",
                         code="input.inf")


def _outputs(plan: TensorPlan, result: OpResult) -> list[npt.NDArray[Any]]:
    """The arrays to write, in the plan's order: the codes in their file dtype, then scale and zero point."""
    qtype = plan.qtype
    data = result.data
    if qtype is QuantizationType.FLOAT16:
        return [np.asarray(data, np.float16)]
    if qtype is QuantizationType.BFLOAT16:
        return [np.asarray(data, F32).astype(ml_dtypes.bfloat16)]
    params = result.params
    assert params is not None
    pshape = plan.outputs[1][2]
    codes = data.astype(_FP8[qtype][1]) if qtype.is_float8 else data
    arrays = [codes, params.scale.astype(F32).reshape(pshape)]
    if len(plan.outputs) == 3:
        arrays.append(params.zero_point.astype(codes.dtype).reshape(pshape))
    return arrays


def job_kernels() -> tuple[Any, ...]:
    """The compiled kernels a job runs (the quantize kernels with the report, the range passes, the bfloat16
    cast), not the whole engine's."""
    return (*kernels.JOB_KERNELS, formats.BFLOAT16_KERNEL)


def warm_job_kernels() -> None:
    """Load the job's kernels (job_kernels): call once when a job worker starts, so that no job pays for a
    compilation, and its worker holds no kernel it never runs."""
    warm_kernels(job_kernels())


# ---------------------------------------------------------------------- summary
def summarize(layers: list[LayerReport]) -> dict[str, Any]:
    """Counts, bytes, compression ratio, the SQNR of the quantized layers weighted by their sizes, and the five
    layers of lowest SQNR."""
    quantized = [r for r in layers if r.action == "quantized"]
    rated = [r for r in quantized if r.sqnr_db is not None]
    bytes_in = sum(r.bytes_in for r in layers)
    bytes_out = sum(r.bytes_out for r in layers)
    weight = sum(r.values for r in rated)
    worst = sorted(rated, key=lambda r: (r.sqnr_db, r.name))[:5]
    return {
        "tensors_quantized": len(quantized),
        "tensors_kept": sum(r.action == "kept" for r in layers),
        "tensors_skipped": sum(r.action == "skipped" for r in layers),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "compression_ratio": bytes_in / bytes_out if bytes_out else None,
        "sqnr_db": sum(r.values * r.sqnr_db for r in rated if r.sqnr_db is not None) / weight if weight else None,
        "worst_layers": [{"name": r.name, "sqnr_db": r.sqnr_db} for r in worst],
    }
