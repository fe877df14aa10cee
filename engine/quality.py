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
have no error to measure; they are in `clipped` when the call counted them). One pass over memory: the arrays
are read block by block, and each block is reduced several times while it is in cache (no full-size
temporary). Sums of squares are float32 reductions of each block (dot products per tensor) added up in
float64. A block whose figures come out non-finite (NaN or infinite inputs, or squares beyond float32) is redone
in float64 with the non-finite elements masked out, and so is a block whose float32 squares may have underflowed
(its largest value or error below 1e-18; per channel, a channel's sum below 1e-30).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import QuantizationType
from .formats import FP8_MAX
from .qparams import qrange

F32 = np.float32
F64 = np.float64
_TINY = 1e-18  # below this, float32 squares approach the subnormal range (1.2e-38)
_TINY_SQUARE = 1e-30
BLOCK = 64 * 1024  # float32 elements per block: 256 KiB per operand, the error buffer in cache beside both


@dataclasses.dataclass(frozen=True)
class QualityReport:
    """The report of one quantization. `channel_sqnr_db` is None per tensor."""

    sqnr_db: float | None
    max_abs_error: float
    rms_error: float
    mean_error: float
    clipped: int
    clipped_share: float
    range: tuple[float, float]
    values: int
    channel_sqnr_db: tuple[float | None, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every number finite, `range` as a list; `channel_sqnr_db` only per channel."""
        out = dataclasses.asdict(self)
        out["range"] = list(self.range)
        if self.channel_sqnr_db is None:
            del out["channel_sqnr_db"]
        else:
            out["channel_sqnr_db"] = list(self.channel_sqnr_db)
        return out


def sqnr_from_sums(signal: float, noise: float) -> float | None:
    """10 log10(signal / noise), None when either is 0 (exact reconstruction, or an all-zero signal)."""
    if noise <= 0.0 or signal <= 0.0:
        return None
    return 10.0 * math.log10(signal / noise)


class _Sums:
    """Running sums per channel (one channel per tensor): float64 arrays of length C."""

    def __init__(self, channels: int) -> None:
        self.signal = np.zeros(channels, F64)
        self.noise = np.zeros(channels, F64)
        self.error = np.zeros(channels, F64)
        self.compared = np.zeros(channels, np.int64)
        self.err_lo = math.inf
        self.err_hi = -math.inf
        self.x_lo = math.inf
        self.x_hi = -math.inf

    def add(self, xb: npt.NDArray[np.float32], db: npt.NDArray[np.float32], buf: npt.NDArray[np.float32],
            axes: tuple[int, ...] | None, sc: slice) -> None:
        """One block: `xb`, `db` and the work buffer `buf` of one shape; `axes` the axes reduced to get one figure
        per channel (None: per tensor), `sc` the channels the block holds."""
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.subtract(db, xb, out=buf)
            err_lo, err_hi = float(np.minimum.reduce(e, axis=None)), float(np.maximum.reduce(e, axis=None))
            x_lo, x_hi = float(np.minimum.reduce(xb, axis=None)), float(np.maximum.reduce(xb, axis=None))
            error = np.add.reduce(e, axis=axes)
            if axes is None:  # BLAS dot products: one read, no write
                flat_e, flat_x = e.reshape(-1), xb.reshape(-1)
                noise, signal = np.dot(flat_e, flat_e), np.dot(flat_x, flat_x)
            else:
                noise = np.add.reduce(np.multiply(e, e, out=e), axis=axes)
                signal = np.add.reduce(np.multiply(xb, xb, out=buf), axis=axes)
                # A channel's sums near float32's smallest (or 0, which may hide underflowed squares) are redone
                # in float64 with the whole block: rare, and it keeps one channel's tiny values honest.
                if float(np.minimum.reduce(noise, axis=None)) < _TINY_SQUARE or float(
                        np.minimum.reduce(signal, axis=None)) < _TINY_SQUARE:
                    noise = signal = np.array(np.nan)
        # One Python sum tells whether every figure is finite (inf - inf is NaN): no array test per block. Values
        # so small that their float32 squares underflow are summed in float64 too (else 0 would read as exact).
        x_top, err_top = max(-x_lo, x_hi), max(-err_lo, err_hi)
        if (not math.isfinite(err_lo + err_hi + x_lo + x_hi + float(np.add.reduce(noise, axis=None))
                              + float(np.add.reduce(signal, axis=None)))
                or 0.0 < x_top < _TINY or 0.0 < err_top < _TINY):
            self._add_masked(xb, db, axes, sc)
            return
        self.signal[sc] += signal
        self.noise[sc] += noise
        self.error[sc] += error
        self.compared[sc] += xb.size // max(1, self.compared[sc].size)
        self._extremes(err_lo, err_hi, x_lo, x_hi)

    def _add_masked(self, xb: npt.NDArray[np.float32], db: npt.NDArray[np.float32], axes: tuple[int, ...] | None,
                    sc: slice) -> None:
        x64, d64 = xb.astype(F64), db.astype(F64)
        ok = np.isfinite(x64) & np.isfinite(d64)
        e = np.where(ok, d64 - x64, 0.0)
        xs = np.where(ok, x64, 0.0)
        self.signal[sc] += np.add.reduce(xs * xs, axis=axes)
        self.noise[sc] += np.add.reduce(e * e, axis=axes)
        self.error[sc] += np.add.reduce(e, axis=axes)
        self.compared[sc] += np.count_nonzero(ok, axis=axes)
        if ok.any():
            self._extremes(float(e[ok].min()), float(e[ok].max()), float(x64[ok].min()), float(x64[ok].max()))

    def _extremes(self, err_lo: float, err_hi: float, x_lo: float, x_hi: float) -> None:
        self.err_lo, self.err_hi = min(self.err_lo, err_lo), max(self.err_hi, err_hi)
        self.x_lo, self.x_hi = min(self.x_lo, x_lo), max(self.x_hi, x_hi)


def _blocks(shape3: tuple[int, int, int], block: int) -> Iterator[tuple[slice, slice, slice]]:
    """Slices of an (outer, channels, inner) view, each about `block` elements or fewer."""
    outer, channels, inner = shape3
    if channels * inner <= block:
        step = max(1, block // max(1, channels * inner))
        for o0 in range(0, outer, step):
            yield slice(o0, o0 + step), slice(0, channels), slice(0, inner)
        return
    step = max(1, block // max(1, inner))
    for o in range(outer):
        for c0 in range(0, channels, step):
            for i0 in range(0, inner, block):
                yield slice(o, o + 1), slice(c0, c0 + step), slice(i0, i0 + block)


def _shape3(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    size = int(np.prod(shape, dtype=np.int64))
    if axis is None:
        return 1, 1, size
    return (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


def _compare(xs: npt.NDArray[np.float32], other: npt.NDArray[Any], clipped: int, axis: int | None,
             dequantize: Callable[[npt.NDArray[Any], slice, npt.NDArray[np.float32]], npt.NDArray[np.float32]]
             ) -> QualityReport:
    """Walk `xs` and `other` (dequantized values, or codes that `dequantize(block, channels, buffer)` turns into
    them in cache) block by block into one `_Sums`."""
    if xs.shape != other.shape:
        raise ValueError(f"shapes differ: {xs.shape} and {other.shape}")
    n = int(xs.size)
    shape3 = _shape3(xs.shape, axis)
    work = np.empty((2, min(max(n, 1), BLOCK)), F32)
    sums = _Sums(shape3[1])
    if axis is None:  # flat blocks: the cheapest ufunc loops
        xf, of, everything = xs.reshape(-1), other.reshape(-1), slice(0, 1)
        for i0 in range(0, n, BLOCK):
            xb = xf[i0:i0 + BLOCK]
            db = dequantize(of[i0:i0 + BLOCK], everything, work[1, :xb.size])
            sums.add(xb, db, work[0, :xb.size], None, everything)
        return _report(sums, clipped, n, per_channel=False)
    x3, o3 = xs.reshape(shape3), other.reshape(shape3)
    for so, sc, si in _blocks(shape3, BLOCK):
        xb = x3[so, sc, si]
        size, shape = xb.size, xb.shape
        db = dequantize(o3[so, sc, si], sc, work[1, :size].reshape(shape))
        sums.add(xb, db, work[0, :size].reshape(shape), (0, 2), sc)
    return _report(sums, clipped, n, per_channel=True)


def quality_report(x: npt.ArrayLike, dequantized: npt.ArrayLike, clipped: int,
                   channel_dim: int | None = None) -> QualityReport:
    """The report of `dequantized` (what the quantized values stand for, exactly) against the input `x`; with
    `channel_dim`, one SQNR per channel along that axis besides the overall figures."""
    xs = np.ascontiguousarray(x, dtype=F32)
    ds = np.ascontiguousarray(dequantized, dtype=F32)
    axis = None if channel_dim is None else channel_dim % max(1, xs.ndim)
    return _compare(xs, ds, clipped, axis, lambda block, _channels, _buf: block)


def codes_report(x: npt.ArrayLike, codes: npt.ArrayLike, scale: npt.ArrayLike, zero_point: npt.ArrayLike,
                 clipped: int, channel_dim: int | None = None) -> QualityReport:
    """`quality_report` of integer `codes` with their per-tensor (scalars) or per-channel (one per index along
    `channel_dim`) scale and zero point, dequantized block by block in cache as DequantizeLinear does,
    float32((q - zp) * scale), instead of into a full-size array first."""
    xs = np.ascontiguousarray(x, dtype=F32)
    qs = np.ascontiguousarray(codes)
    axis = None if channel_dim is None else channel_dim % max(1, xs.ndim)
    scales = np.asarray(scale, F32).reshape(1, -1, 1)
    zps = np.asarray(zero_point).astype(F32).reshape(1, -1, 1)  # small integers: exact in float32
    if axis is None:
        s, z = scales.reshape(-1)[0], zps.reshape(-1)[0]

        def per_tensor(block: npt.NDArray[Any], _channels: slice, buf: npt.NDArray[np.float32]
                       ) -> npt.NDArray[np.float32]:
            buf[...] = block  # a plain cast first: a ufunc mixing int8 and float32 operands casts through buffers
            np.subtract(buf, z, out=buf)
            np.multiply(buf, s, out=buf)
            return buf

        return _compare(xs, qs, clipped, None, per_tensor)

    def per_channel(block: npt.NDArray[Any], channels: slice, buf: npt.NDArray[np.float32]
                    ) -> npt.NDArray[np.float32]:
        buf[...] = block
        np.subtract(buf, zps[:, channels], out=buf)
        np.multiply(buf, scales[:, channels], out=buf)
        return buf

    return _compare(xs, qs, clipped, axis, per_channel)


def _report(sums: _Sums, clipped: int, n: int, *, per_channel: bool) -> QualityReport:
    compared = int(sums.compared.sum())
    noise, signal = float(sums.noise.sum()), float(sums.signal.sum())
    some = compared > 0
    return QualityReport(
        sqnr_db=sqnr_from_sums(signal, noise),
        max_abs_error=max(-sums.err_lo, sums.err_hi) if some else 0.0,
        rms_error=math.sqrt(noise / compared) if some else 0.0,
        mean_error=float(sums.error.sum()) / compared if some else 0.0,
        clipped=int(clipped),
        clipped_share=clipped / n if n else 0.0,
        range=(sums.x_lo, sums.x_hi) if some else (0.0, 0.0),
        values=n,
        channel_sqnr_db=tuple(sqnr_from_sums(float(s), float(e)) for s, e in zip(sums.signal, sums.noise,
                                                                                  strict=True))
        if per_channel else None,
    )


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
