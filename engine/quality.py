"""What a quantization cost: error figures of the exact dequantized values against the float32 input.

`quality_report(x, dequantized, clipped, channel_dim=None)` compares the two arrays element by element, with
error e = dequantized - x:

- sqnr_db: 10 log10(sum x^2 / sum e^2); None (never infinity) when the reconstruction is exact (sum e^2 = 0) or
  the input is all zeros (sum x^2 = 0), where the ratio says nothing;
- max_abs_error max |e|, rms_error sqrt(mean e^2), mean_error mean e (the reconstruction's bias);
- clipped (given: the quantizer counts it while it quantizes) and clipped_share = clipped / values;
- range [min x, max x] of the input, values = the element count;
- per channel (`channel_dim`): the same overall figures, plus one SQNR per channel along that axis.

The figures cover the elements where both the input and its dequantized value are finite (NaN and infinity
have no error to measure; they are in `clipped` when the call counted them). Sums are float64 (squares of
float32 values are exact in float64). A quantize with `report` takes them in the same compiled pass as its codes
(engine.kernels: e is the float32 difference of the dequantized value and the input, as numpy's `d - x` of two
float32 arrays); NaN or infinities there make its sums non-finite, and the report is then taken again here, as
for values given (`quality_report`), in one compiled pass that leaves them out (e in float64).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels
from .config import QuantizationType
from .formats import FP8_MAX
from .qparams import qrange

F32 = np.float32


@dataclasses.dataclass(frozen=True)
class QualityReport:
    """The report of one quantization. Per channel, `channel_sums` holds each channel's (sum x^2, sum e^2), and
    `channel_sqnr_db` is computed from them when first asked for (a model job's thousands of channels per tensor
    never ask: it cost 1.5 ms a tensor); None per tensor."""

    sqnr_db: float | None
    max_abs_error: float
    rms_error: float
    mean_error: float
    clipped: int
    clipped_share: float
    range: tuple[float, float]
    values: int
    channel_sums: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = dataclasses.field(
        default=None, repr=False, compare=False)

    @functools.cached_property
    def channel_sqnr_db(self) -> tuple[float | None, ...] | None:
        return None if self.channel_sums is None else _channel_sqnr(*self.channel_sums)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every number finite, `range` as a list; `channel_sqnr_db` only per channel."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "channel_sums"}
        out["range"] = list(self.range)
        if self.channel_sqnr_db is not None:
            out["channel_sqnr_db"] = list(self.channel_sqnr_db)
        return out


def sqnr_from_sums(signal: float, noise: float) -> float | None:
    """10 log10(signal / noise), None when either is 0 (exact reconstruction, or an all-zero signal)."""
    if noise <= 0.0 or signal <= 0.0:
        return None
    return 10.0 * math.log10(signal / noise)


def quality_report(x: npt.ArrayLike, dequantized: npt.ArrayLike, clipped: int,
                   channel_dim: int | None = None) -> QualityReport:
    """The report of `dequantized` (what the quantized values stand for, exactly) against the input `x`; with
    `channel_dim`, one SQNR per channel along that axis besides the overall figures."""
    xs = np.ascontiguousarray(x, dtype=F32)
    ds = np.ascontiguousarray(dequantized, dtype=F32)
    if xs.shape != ds.shape:
        raise ValueError(f"shapes differ: {xs.shape} and {ds.shape}")
    axis = None if channel_dim is None else channel_dim % max(1, xs.ndim)
    return report_from_sums(kernels.compare(xs, ds, axis), clipped, int(xs.size), per_channel=axis is not None)


def report_from_sums(sums: kernels.Sums, clipped: int, n: int, *, per_channel: bool) -> QualityReport:
    """The report of `n` values from the sums a kernel took (engine.kernels.Sums)."""
    compared = sums.compared
    noise, signal = float(sums.noise.sum()), float(sums.signal.sum())
    some = compared > 0
    return QualityReport(
        sqnr_db=sqnr_from_sums(signal, noise),
        max_abs_error=sums.worst if some else 0.0,
        rms_error=math.sqrt(noise / compared) if some else 0.0,
        mean_error=sums.error / compared if some else 0.0,
        clipped=int(clipped),
        clipped_share=clipped / n if n else 0.0,
        range=(sums.lo, sums.hi) if some else (0.0, 0.0),
        values=n,
        channel_sums=(sums.signal, sums.noise) if per_channel else None,
    )


def _channel_sqnr(signal: npt.NDArray[np.float64], noise: npt.NDArray[np.float64]) -> tuple[float | None, ...]:
    """sqnr_from_sums per channel, in one numpy pass (thousands of channels: a Python loop cost milliseconds)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = (10.0 * np.log10(signal / noise)).tolist()
    ok = ((signal > 0.0) & (noise > 0.0)).tolist()
    return tuple(v if k else None for v, k in zip(db, ok, strict=True))


def grid_extent(qtype: QuantizationType, num_bits: int, scale: float, zero_point: int = 0
                ) -> tuple[float, float] | None:
    """The real values the quantization grid reaches with this scale and zero point: [(qmin - zp) s, (qmax - zp) s]
    for the integer types, +-(largest finite value) s for FP8; None for the float casts (no grid to speak of)."""
    if qtype.is_integer:
        qmin, qmax = qrange(qtype, num_bits)
        return (qmin - zero_point) * scale, (qmax - zero_point) * scale
    if qtype.is_float8:
        top = FP8_MAX["e4m3fn" if qtype is QuantizationType.FP8_E4M3 else "e5m2"] * scale
        return -top, top
    return None
