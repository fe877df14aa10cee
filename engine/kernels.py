"""Fused single-pass kernels (numba) for QuantizeLinear / DequantizeLinear semantics, per tensor, per channel and
per block, integer codes and float8 values, with the clipped count taken in the same pass.

quantize:   q = clip(rint(x / scale) + zp, qmin, qmax)   float32 division (never a reciprocal multiply), round
            half to even, the zero point added after rounding, then the clamp; NaN -> zp
fake:       y = (q - zp) * scale                          (zero comes out +0.0, as from the unfused q - zp)
float8:     v = x / scale saturated to +-max (NaN stays NaN), rounded to the nearest float8 value, ties to even:
            with E = max(exponent(|v|), emin) the float8 quantum at |v| is 2^(E - m), and for
            C = 1.5 * 2^(E - m + 23), |v| + C lies where the float32 spacing is that quantum, so the hardware's
            round-to-nearest-even of the sum *is* the float8 rounding; subtracting C is exact
dequantize: y = float32((q - zp) * scale)                 (q - zp exact in float32, one rounding, as ONNX Runtime)

Each kernel reads its input once and writes its output once; compiled without fastmath, so every operation rounds
as IEEE float32 does and the results are the bits numpy gives for the same expressions (tests/engine compares
them with numpy written in the tests and with the reference vectors).

Layouts. Every parameter shape is run as one of two loops over the flat data:
- segments: rows of `D` elements cut into segments of `seg` (the last may be shorter), segment k of row r using
  scalar parameters [r * nb + k]: per tensor (one segment), per channel when a channel's run is long (rows are the
  runs, parameters tiled over the outer axis), blocks along the last axis (segments are the blocks);
- rows: rows of `L` elements with a parameter per element of the row, row r using parameter row
  (r // dim) * nb + (r % dim) // seg: per channel with short runs (one parameter row, the channels repeated over
  a period), blocks along an inner axis.
Dynamic integer blocks along the last axis run the segments kernels with `dynamic` set (quantize_blocks): each
block's range, parameters and codes (with the report, its sums) in one pass over it, so that the data is read from
memory once; per-channel quantizes whose channels are long contiguous runs use it with one block per channel
(engine.ranges.quantize_channels).
A segment (_segment) and a row (_row) are each one loop that LLVM vectorises, its clipped count in uint32. Indices
are unsigned (signed ones make numba wrap negative indices, which stops LLVM
from vectorising).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .jit import OPTIONS, bits_f32, f32_bits, inline, kernel
from .pages import fresh_array

if TYPE_CHECKING:
    from .qparams import QParams

# The report's helpers are compiled with their own options (not registered: the report kernels that call them
# compile them); numba only after .jit, which sets numba's cache folder before its import.
_njit: Callable[..., Callable[[Callable[..., Any]], Any]] = importlib.import_module("numba").njit

F32 = np.float32
COUNT_BLOCK = 1 << 30  # values per uint32 clipped count in _segment (far from its overflow)
SEGMENT_MIN = 64  # per channel: runs at least this long are segments, shorter ones rows (measured crossover)
INT, FP8 = 0, 1  # the `kind` of a quantize kernel: integer codes, float8 values
_NO_FP8 = (np.uint32(0), np.uint32(0))
_GIVEN = (0, 0, False, False, False)  # the segments kernels' (cmin, cmax, symmetric, torch, dynamic): parameters given


# ---------------------------------------------------------------------- element operations (inlined)
@inline
def _code(v: Any, s: Any, z: Any, lo: Any, hi: Any, kind: Any, emin_bits: Any, offset: Any) -> Any:
    """(result as float32, clipped?) of one value. float8: z = 0, the values saturate to [-hi, hi] = [-max, max],
    and lo = -limit, the largest |v| that rounds to max: beyond it a value is clipped (saturated)."""
    if kind == INT:
        w = np.rint(v / s) + z
        c = lo if w < lo else w
        c = hi if c > hi else c
        c = z if c != c else c
        return c, c != w
    w = v / s
    c = -hi if w < -hi else w
    c = hi if c > hi else c
    a = abs(c)
    e = f32_bits(a) & np.uint32(0x7F800000)
    e = emin_bits if e < emin_bits else e
    k = bits_f32(e + offset)
    r = (a + k) - k
    c = bits_f32(f32_bits(r) | (f32_bits(c) & np.uint32(0x80000000)))
    return c, not (abs(w) <= -lo)


# ---------------------------------------------------------------------- parameters (qparams' float32 rules)
# qparams.scale_zero_point's `onnx` and `torch` rules are these compiled functions, so that the segments kernels inline
# the very same arithmetic; they live in this file because numba's on-disk cache of a kernel is checked against its
# own file only (an inlined function from another module could change without recompiling the kernel).
TINY = np.finfo(np.float32).tiny
TORCH_EPS = F32(2.0**-23)  # torch.finfo(torch.float32).eps, the observers' scale floor


@inline
def _widen(rmin: Any, rmax: Any, symmetric: Any) -> Any:
    """The range [rmin, rmax] (float32) widened to include 0 (symmetric: [-amax, amax]), with np.minimum's and
    np.maximum's NaN and signed-zero choices (a if a < b or a is NaN, else b)."""
    zero = np.float32(0)
    lo = rmin if rmin < zero or rmin != rmin else zero
    hi = rmax if rmax > zero or rmax != rmax else zero
    if symmetric:
        a, b = abs(lo), abs(hi)
        amax = a if a > b or a != a else b
        lo, hi = -amax, amax
    return lo, hi


@inline
def _float32_params(lo: Any, hi: Any, qmin: Any, qmax: Any, symmetric: Any, torch: Any) -> Any:
    """The `onnx` and `torch` rules for one widened range [lo, hi]: (scale, zero point, fallback?), all arithmetic
    in float32 (the zero point a float32 integer). `fallback`: the scale is not a finite normal float32 or the
    range is [0, 0] (torch's eps floor answers that one itself): scale_zero_point then takes ort_tooling's."""
    if symmetric:
        if torch or qmin < 0:
            scale = hi / np.float32((qmax - qmin) / 2)  # torch: amax / 127.5; onnx signed (narrowed): amax / qmax
        else:
            scale = (hi * np.float32(2)) / np.float32(qmax - qmin)  # onnx unsigned: 2 amax / 255
        if torch:
            scale = TORCH_EPS if scale < TORCH_EPS else scale  # (np.maximum: NaN stays NaN)
        zp = np.float32(np.rint((qmin + qmax) / 2))
    else:
        scale = (hi - lo) / np.float32(qmax - qmin)
        if torch:
            scale = TORCH_EPS if scale < TORCH_EPS else scale
            zp = np.float32(qmin) - np.rint(lo / scale)  # qmin - round(min_neg / scale)
        else:
            zp = np.rint(np.float32(qmin) - lo / scale)  # round(qmin - min / scale): ORT's initial_zp, then rounded
        zp = np.float32(0) if zp != zp else zp  # only where the scale falls back (the caller replaces those)
        zp = np.float32(qmin) if zp < qmin else zp
        zp = np.float32(qmax) if zp > qmax else zp
    fallback = not (np.isfinite(scale) and scale >= TINY) or (hi == lo and not torch)
    return scale, zp, fallback


@inline
def block_params32(rmin: Any, rmax: Any, qmin: Any, qmax: Any, symmetric: Any, torch: Any) -> Any:
    """qparams.scale_zero_point's `onnx` / `torch` rule for one range (the fused grouped kernel):
    (scale, zero point as float32, fallback?); where `fallback` is true the parameters are ort_tooling's, which
    only scale_zero_point computes."""
    lo, hi = _widen(rmin, rmax, symmetric)
    return _float32_params(lo, hi, qmin, qmax, symmetric, torch)


@kernel("void(float32[::1], float32[::1], boolean, float32[::1], float32[::1])")
def widen_all(rmin: Any, rmax: Any, symmetric: Any, lo: Any, hi: Any) -> None:
    """_widen over arrays (lo, hi may be rmin, rmax themselves)."""
    for i in range(rmin.size):
        lo[i], hi[i] = _widen(rmin[i], rmax[i], symmetric)


@kernel("void(float32[::1], float32[::1], int64, int64, boolean, boolean, float32[::1], float32[::1], boolean[::1])")
def float32_params_all(lo: Any, hi: Any, qmin: Any, qmax: Any, symmetric: Any, torch: Any, scale: Any, zp: Any,
                       fallback: Any) -> None:
    """_float32_params over arrays."""
    for i in range(lo.size):
        scale[i], zp[i], fallback[i] = _float32_params(lo[i], hi[i], qmin, qmax, symmetric, torch)


# ---------------------------------------------------------------------- quantize
@_njit(**OPTIONS, fastmath={"reassoc", "contract"})
def _add_sums(sig: Any, noi: Any, err: Any, xv: Any, e: Any) -> Any:
    """(sig + x^2, noi + e^2, err + e) in float64. Its own function, compiled with reassociation, so that LLVM may
    keep the three sums of the loop that inlines it in vector lanes; the codes, the errors and the extremes around
    it are compiled without fastmath (numba puts the flags on each instruction of the function it compiles, and
    numba's own inlining would hand them to the caller's code: the kernels call this one, and LLVM inlines it
    with its flags). Order changes only the last bits of the float64 sums."""
    xd, ed = np.float64(xv), np.float64(e)
    return sig + xd * xd, noi + ed * ed, err + ed


@inline
def _segment(x: Any, out: Any, a: Any, b: Any, s: Any, z: Any, lo: Any, hi: Any, fake: Any, kind: Any,
             emin_bits: Any, offset: Any, report: Any, keys: Any) -> Any:
    """The codes of x[a:b] (a, b unsigned) with one scale and zero point in one loop, which LLVM vectorises when
    `fake` and `kind` are constants (the callers branch on them), and with `report` the report's figures in the
    same loop: (clipped count, sum x^2, sum e^2, sum e, keys). The count runs in uint32 over blocks of
    COUNT_BLOCK values (int32 lanes in an array, whose every update went through memory, measured 3.9 ms against
    2.3 for 16M INT8 codes in cache; an int64 count 3.8). keys = (max bits of |e|, max and min of x's bits as
    int32, max of x's bits as uint32): exact extremes as integer reductions, which vectorise as they are (float
    ones need fastmath); |e|'s bits order as unsigned integers (NaN above +inf), x's give its range by _extremes.
    With the report, one loop measured 7.5 ms for the INT8 codes of 16M values against 8.9 for the codes' lane
    loop followed by loops of their own for the sums and the extremes over each 2048 values in cache."""
    top, imax, imin, umax = keys
    count = 0
    sig, noi, err = 0.0, 0.0, 0.0
    for c0 in range(a, b, np.uint64(COUNT_BLOCK)):
        run = np.uint32(0)
        for i in range(c0, min(c0 + np.uint64(COUNT_BLOCK), b)):
            xv = x[i]
            out[i], bad, e = _formed(xv, s, z, lo, hi, fake, kind, emin_bits, offset)
            run = np.uint32(run + np.uint32(bad))
            if report:
                sig, noi, err = _add_sums(sig, noi, err, xv, e)
                top, imax, imin, umax = _seen(xv, e, top, imax, imin, umax)
        count += int(run)
    return count, sig, noi, err, (top, imax, imin, umax)


@inline
def _formed(xv: Any, s: Any, z: Any, lo: Any, hi: Any, fake: Any, kind: Any, emin_bits: Any, offset: Any) -> Any:
    """One value's (answer: its code, or `fake` its dequantized value; clipped?; error x^ - x in float32)."""
    c, bad = _code(xv, s, z, lo, hi, kind, emin_bits, offset)
    y = (c - z) * s
    return (y if fake else c), bad, y - xv


@inline
def _seen(xv: Any, e: Any, top: Any, imax: Any, imin: Any, umax: Any) -> Any:
    """_segment's and _row's keys after value xv with error e: integer extremes of the bits (see _segment)."""
    ub = f32_bits(xv)
    ib = np.int32(ub)
    ae = f32_bits(abs(e))
    return (ae if ae > top else top, ib if ib > imax else imax, ib if ib < imin else imin,
            ub if ub > umax else umax)


@inline
def _row(x: Any, out: Any, base: Any, p: Any, n: Any, scale: Any, zp: Any, lo: Any, hi: Any, fake: Any, kind: Any,
         emin_bits: Any, offset: Any, report: Any, psig: Any, pnoise: Any, keys: Any) -> Any:
    """The codes of x[base:base + n] (unsigned), element t with scale[p + t] and zp[p + t], in one loop as in
    _segment: (clipped count, sum e, keys), and with `report` x^2 and e^2 added to psig[p + t] and pnoise[p + t]
    (element-wise, so in the same order as ever: only sum e is reassociated). The lane loop it replaced kept its
    float reductions in per-lane arrays: 4000x4000 per channel along the last axis with the report measured 60 ms
    against 7.4 for the first axis."""
    top, imax, imin, umax = keys
    err = 0.0
    run = np.uint32(0)  # (a row is far shorter than 2^32 values)
    for t in range(n):
        i, q = base + t, p + t
        xv = x[i]
        out[i], bad, e = _formed(xv, scale[q], zp[q], lo, hi, fake, kind, emin_bits, offset)
        run = np.uint32(run + np.uint32(bad))
        if report:
            xd, ed = np.float64(xv), np.float64(e)
            psig[q] += xd * xd
            pnoise[q] += ed * ed
            _, _, err = _add_sums(0.0, 0.0, err, xv, e)
            top, imax, imin, umax = _seen(xv, e, top, imax, imin, umax)
    return int(run), err, (top, imax, imin, umax)


@inline
def _finish_keys(acc_out: Any, err: Any, keys: Any) -> None:
    """acc_out = [sum e, max |e|, min x, max x] from the kernel's sum e and keys (a NaN error makes max |e| NaN:
    the caller then redoes the report)."""
    top, imax, imin, umax = keys
    acc_out[0], acc_out[1] = err, bits_f32(top)
    acc_out[2], acc_out[3] = _extremes(imax, imin, umax)


_OUT_TYPES = ("int8", "uint8", "int16", "float32")
_SUMS = "float64[::1], float64[::1], float64[::1]"  # per-parameter signal, noise; [error, max |e|, min x, max x]
_QSEG = "int64(float32[::1], {0}[::1], int64, int64, float32[::1], float32[::1], float32, float32, boolean, int64, " \
        "uint32, uint32, int64, int64, boolean, boolean, boolean, " + _SUMS + ")"
_QROW = "int64(float32[::1], {0}[::1], int64, int64, int64, float32[::1], float32[::1], float32, float32, boolean, " \
        "int64, uint32, uint32, " + _SUMS + ")"


def _quantize_kernels(report: bool) -> tuple[Any, Any]:
    """The segments and rows quantize kernels; with `report` (a compile-time constant: the plain kernels carry no
    trace of it) they also sum, in the same pass, what the quality report needs of each value's error
    e = x^ - x (x^ the dequantized value (c - zp) * scale in float32, e a float32 difference): sum x^2 and sum e^2
    per parameter (in float64), sum e (float64), max |e|, min and max x.
    NaN and infinities are not masked here: they make the figures non-finite, and the caller then redoes the
    report with `compare`, which leaves them out."""

    @kernel(*(_QSEG.format(t) for t in _OUT_TYPES))
    def segments(x: Any, out: Any, d: Any, seg: Any, scale: Any, zp: Any, lo: Any, hi: Any, fake: Any,
                 kind: Any, emin_bits: Any, offset: Any, cmin: Any, cmax: Any, symmetric: Any, torch: Any,
                 dynamic: Any, psig: Any, pnoise: Any, acc_out: Any) -> Any:
        """Segments of `seg` in rows of `d`, segment p with scale[p] and zp[p]. `dynamic` (integer codes, lo and
        hi the type's range): each segment's parameters from its own range instead, written to scale[p] and
        zp[p]: its max |x| (symmetric) or min and max from the bits (as _absmax_segments and _minmax_segments
        take them), its scale and zero point for [cmin, cmax] by block_params32, then its codes (and the report's
        figures) while it is in L1; the input is read from memory once (two passes read it twice: measured 3.6 ms
        of 11.7 for INT4 on 16M). Requesting the next segment's lines first (llvm.prefetch, all at once) measured
        0.104 s/GiB against 0.079 without, per channel on 4000x4000 (a quantize with given parameters 0.052).
        Returns the clipped count, or (dynamic) -1 as soon as a segment's range is not finite or its parameters
        need the float64 fallback (the caller then takes the two passes)."""
        nb = (d + seg - 1) // seg
        total = 0
        err = 0.0
        keys = (np.uint32(0), np.int32(-0x80000000), np.int32(0x7FFFFFFF), np.uint32(0))  # _segment's
        for r in range(x.size // d):
            for k in range(nb):
                a = np.uint64(r * d + k * seg)
                b = np.uint64(r * d + min(d, (k + 1) * seg))
                if dynamic:
                    if symmetric:
                        top = np.uint32(0)
                        for i in range(a, b):
                            v = f32_bits(abs(x[i]))
                            top = v if v > top else top
                        amax = bits_f32(top)
                        rmin, rmax = -amax, amax
                    else:
                        rmin, rmax = _range_by_bits(x, a, b)
                    if not (np.isfinite(rmin) and np.isfinite(rmax)):
                        return -1
                    scale[r * nb + k], zp[r * nb + k], fallback = block_params32(rmin, rmax, cmin, cmax, symmetric,
                                                                                 torch)
                    if fallback:
                        return -1
                s, z = scale[r * nb + k], zp[r * nb + k]
                if kind == INT and fake:
                    part = _segment(x, out, a, b, s, z, lo, hi, True, INT, emin_bits, offset, report, keys)
                elif kind == INT:
                    part = _segment(x, out, a, b, s, z, lo, hi, False, INT, emin_bits, offset, report, keys)
                elif fake:
                    part = _segment(x, out, a, b, s, z, lo, hi, True, FP8, emin_bits, offset, report, keys)
                else:
                    part = _segment(x, out, a, b, s, z, lo, hi, False, FP8, emin_bits, offset, report, keys)
                count, sig, noi, serr, keys = part
                total += count
                if report:
                    err += serr
                    psig[r * nb + k] += sig
                    pnoise[r * nb + k] += noi
        if report:
            _finish_keys(acc_out, err, keys)
        return total

    @kernel(*(_QROW.format(t) for t in _OUT_TYPES))
    def rows(x: Any, out: Any, row: Any, dim: Any, seg: Any, scale: Any, zp: Any, lo: Any, hi: Any,
             fake: Any, kind: Any, emin_bits: Any, offset: Any, psig: Any, pnoise: Any, acc_out: Any) -> Any:
        nb = (dim + seg - 1) // seg
        total = 0
        err = 0.0
        keys = (np.uint32(0), np.int32(-0x80000000), np.int32(0x7FFFFFFF), np.uint32(0))  # _row's
        n = np.uint64(row)
        for r in range(x.size // row):
            base = np.uint64(r * row)
            p = np.uint64(((r // dim) * nb + (r % dim) // seg) * row)
            if kind == INT and fake:
                part = _row(x, out, base, p, n, scale, zp, lo, hi, True, INT, emin_bits, offset, report, psig, pnoise,
                            keys)
            elif kind == INT:
                part = _row(x, out, base, p, n, scale, zp, lo, hi, False, INT, emin_bits, offset, report, psig,
                            pnoise, keys)
            elif fake:
                part = _row(x, out, base, p, n, scale, zp, lo, hi, True, FP8, emin_bits, offset, report, psig, pnoise,
                            keys)
            else:
                part = _row(x, out, base, p, n, scale, zp, lo, hi, False, FP8, emin_bits, offset, report, psig,
                            pnoise, keys)
            count, rerr, keys = part
            total += count
            err += rerr
        if report:
            _finish_keys(acc_out, err, keys)
        return total

    return segments, rows


_quantize_segments, _quantize_rows = _quantize_kernels(False)
_report_segments, _report_rows = _quantize_kernels(True)

# ---------------------------------------------------------------------- compare (the report of given values)
@kernel("void(float32[::1], float32[::1], int64, int64, float64[::1], float64[::1], float64[::1])")
def _compare(x: Any, d: Any, inner: Any, channels: Any, psig: Any, pnoise: Any, acc_out: Any) -> None:
    """The report's sums of values `d` against `x` (channel (i // inner) % channels), over the elements where both
    are finite, everything in float64 (as the masked sums always were): psig / pnoise per channel, acc_out
    [sum e, max |e|, min x, max x, compared]."""
    err, worst, lo, hi, compared = 0.0, 0.0, np.inf, -np.inf, 0
    n = x.size
    for a in range(0, n, inner):
        c = (a // inner) % channels
        sig = 0.0
        noi = 0.0
        for i in range(a, min(a + inner, n)):
            xv, dv = x[i], d[i]
            if abs(xv) < np.inf and abs(dv) < np.inf:
                xd = np.float64(xv)
                e = np.float64(dv) - xd
                sig += xd * xd
                noi += e * e
                err += e
                worst = max(worst, abs(e))
                lo = min(lo, xd)
                hi = max(hi, xd)
                compared += 1
        psig[c] += sig
        pnoise[c] += noi
    acc_out[0], acc_out[1], acc_out[2], acc_out[3], acc_out[4] = err, worst, lo, hi, compared


# ---------------------------------------------------------------------- dequantize
_CODE_TYPES = ("int8", "uint8", "int16", "int32", "float32")


@kernel(*(f"void({t}[::1], float32[::1], int64, int64, float32[::1], float32[::1])" for t in _CODE_TYPES))
def _dequantize_segments(q: Any, out: Any, d: Any, seg: Any, scale: Any, zp: Any) -> None:
    nb = (d + seg - 1) // seg
    for r in range(q.size // d):
        for k in range(nb):
            s, z = scale[r * nb + k], zp[r * nb + k]
            for i in range(np.uint64(r * d + k * seg), np.uint64(r * d + min(d, (k + 1) * seg))):
                out[i] = (np.float32(q[i]) - z) * s


@kernel(*(f"void({t}[::1], float32[::1], int64, int64, int64, float32[::1], float32[::1])" for t in _CODE_TYPES))
def _dequantize_rows(q: Any, out: Any, row: Any, dim: Any, seg: Any, scale: Any, zp: Any) -> None:
    nb = (dim + seg - 1) // seg
    for r in range(q.size // row):
        base = np.uint64(r * row)
        p = np.uint64(((r // dim) * nb + (r % dim) // seg) * row)
        for t in range(np.uint64(row)):
            out[base + t] = (np.float32(q[base + t]) - zp[p + t]) * scale[p + t]


# ---------------------------------------------------------------------- min / max
@inline
def _extremes(imax: Any, imin: Any, umax: Any) -> Any:
    """(min x, max x) from the integer extremes of the values' bits: imax, imin the largest and smallest bits as
    int32, umax the largest as uint32. Non-negative floats order as their int32 bits; negative ones (sign bit set)
    as their uint32 bits, the larger the more negative. So max x is imax when it is >= 0 (some x >= +0), else imin
    (all negative: the one nearest zero); min x is umax when it has the sign bit (the most negative x), else imin
    (all non-negative). A NaN lands above +inf or below -inf, so it comes out as one of the two (the caller makes
    both NaN, as numpy does)."""
    hi = bits_f32(np.uint32(imax) if imax >= 0 else np.uint32(imin))
    lo = bits_f32(umax if umax >= np.uint32(0x80000000) else np.uint32(imin))
    return lo, hi


@inline
def _range_by_bits(x: Any, a: Any, b: Any) -> Any:
    """(min, max) of x[a:b] (a, b unsigned) by _extremes: three integer reductions, which vectorise as they are."""
    imax, imin, umax = np.int32(-0x80000000), np.int32(0x7FFFFFFF), np.uint32(0)
    for i in range(a, b):
        ub = f32_bits(x[i])
        ib = np.int32(ub)
        imax = ib if ib > imax else imax
        imin = ib if ib < imin else imin
        umax = ub if ub > umax else umax
    return _extremes(imax, imin, umax)


@kernel("void(float32[::1], int64, int64, float32[::1], float32[::1])")
def _minmax_segments(x: Any, d: Any, seg: Any, lo_out: Any, hi_out: Any) -> None:
    """Minimum and maximum of each segment as np.min / np.max give them (NaN if it holds one), in one pass of
    integer maxima and minima of the bits (_extremes): integer reductions vectorise as they are, where float
    comparisons without fastmath need per-lane arrays (measured: per channel on 4096x1024, 5.3 ms with float
    lanes). float32 only: numpy's own integer reductions are as fast (measured)."""
    nb = (d + seg - 1) // seg
    for r in range(x.size // d):
        for k in range(nb):
            lo, hi = _range_by_bits(x, np.uint64(r * d + k * seg), np.uint64(r * d + min(d, (k + 1) * seg)))
            if lo != lo or hi != hi:
                lo = hi = np.float32(np.nan)
            lo_out[r * nb + k] = lo
            hi_out[r * nb + k] = hi


@kernel("void(float32[::1], int64, int64, float32[::1])")
def _absmax_segments(x: Any, d: Any, seg: Any, hi_out: Any) -> None:
    """max |x| of each segment (NaN if it holds one) by the bits: |x| without its sign bit orders as an unsigned
    integer, NaN above +inf, and an integer maximum needs no per-lane arrays to vectorise (measured: the blocks of
    symmetric INT4 grouped quantize, 128 long, spent more in _minmax_segments' lanes than in the codes)."""
    nb = (d + seg - 1) // seg
    for r in range(x.size // d):
        for k in range(nb):
            top = np.uint32(0)
            for i in range(np.uint64(r * d + k * seg), np.uint64(r * d + min(d, (k + 1) * seg))):
                v = f32_bits(abs(x[i]))  # (not bits & 0x7FFFFFFF: numba widens that to 64 bits, half the lanes)
                top = v if v > top else top
            hi_out[r * nb + k] = bits_f32(top)


@kernel("void(float32[::1], int64, int64, int64, float32[::1], float32[::1])")
def _minmax_rows(x: Any, row: Any, dim: Any, seg: Any, lo_out: Any, hi_out: Any) -> None:
    """Element-wise minimum and maximum over the rows that share a parameter row (NaN propagates)."""
    nb = (dim + seg - 1) // seg
    nans = np.zeros(lo_out.size, np.bool_)
    for r in range(x.size // row):
        base = np.uint64(r * row)
        p = np.uint64(((r // dim) * nb + (r % dim) // seg) * row)
        if (r % dim) % seg == 0:
            for t in range(np.uint64(row)):
                lo_out[p + t] = x[base + t]
                hi_out[p + t] = x[base + t]
        for t in range(np.uint64(row)):
            v = x[base + t]
            lo_out[p + t] = v if v < lo_out[p + t] else lo_out[p + t]
            hi_out[p + t] = v if v > hi_out[p + t] else hi_out[p + t]
            nans[p + t] |= v != v
    for t in range(lo_out.size):
        if nans[t]:
            lo_out[t] = hi_out[t] = np.nan


# What a model job runs (engine.jobs.warm_job_kernels): its quantizes always take the report (not the plain
# kernels; per channel, when each channel is one run, the report's segments in one pass), it dequantizes only to
# redo the report of a tensor holding NaN or infinities (with _compare), and its parameters come from
# qparams.scale_zero_point (widen_all, float32_params_all).
JOB_KERNELS = (_report_segments, _report_rows, _compare, _dequantize_segments, _dequantize_rows, _minmax_segments,
               _absmax_segments, _minmax_rows, widen_all, float32_params_all)


# ---------------------------------------------------------------------- layouts
class Layout(NamedTuple):
    """How a parameter shape runs (module docstring): `rows` False: segments of `seg` in rows of `d`; True: rows
    of `d` elements, parameter row (r // dim) * nb + (r % dim) // seg."""

    rows: bool
    d: int
    seg: int
    dim: int
    outer: int  # per channel, segments: the parameters are tiled this many times
    inner: int  # per channel, rows: each channel's parameter repeated this many times


def as_3d(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    """(outer, channels, inner) view of `shape` around `axis` (per tensor: one channel)."""
    if axis is None:
        return 1, 1, math.prod(shape)  # (math.prod: np.prod costs microseconds per call)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def layout(shape: tuple[int, ...], axis: int | None, block_size: int | None = None) -> Layout:
    outer, dim, inner = as_3d(shape, axis)
    size = max(1, outer * dim * inner)
    if axis is None or (dim == 1 and block_size is None):
        return Layout(False, size, size, 1, 1, 1)
    if block_size is not None:
        if inner == 1:
            return Layout(False, max(dim, 1), block_size, 1, 1, 1)
        return Layout(True, inner, block_size, dim, 1, 1)
    if inner >= SEGMENT_MIN:
        return Layout(False, max(inner, 1), max(inner, 1), 1, outer, 1)
    return Layout(True, dim * inner, max(outer, 1), max(outer, 1), 1, inner)


def expand(values: npt.ArrayLike, lay: Layout) -> npt.NDArray[np.float32]:
    """Parameters (one per tensor, channel or block, in the initializer's C order) as the flat float32 array
    the kernels index."""
    flat = np.ascontiguousarray(values, dtype=F32).reshape(-1)
    if lay.outer > 1:
        return np.tile(flat, lay.outer)
    if lay.inner > 1:
        return np.repeat(flat, lay.inner)
    return flat


# ---------------------------------------------------------------------- entry points
class Sums(NamedTuple):
    """What a quality report is made of (engine.quality): per channel (one per tensor, or per block) sum x^2 and
    sum e^2, and over the tensor sum e, max |e|, min x, max x and the count of values they cover."""

    signal: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    error: float
    worst: float
    lo: float
    hi: float
    compared: int

    @property
    def finite(self) -> bool:
        """False when NaN or infinities reached the sums (the fused kernels do not mask them)."""
        return math.isfinite(float(self.signal.sum()) + float(self.noise.sum()) + self.error + self.worst
                             + self.lo + self.hi)


class Blocks(NamedTuple):
    """What the one-pass dynamic quantize gives: the result, the clipped count, the flat float32 scales and zero
    points, and with the report its sums."""

    out: npt.NDArray[Any]
    clipped: int
    scale: npt.NDArray[np.float32]
    zp: npt.NDArray[np.float32]
    sums: Sums | None


# ---------------------------------------------------------------------- threads (model jobs)
_local = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
PARALLEL_MIN = 1 << 18  # elements: below this, one thread (splitting costs more than it saves)


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Within it, on this thread, quantize and the per-channel range pass split their rows over `count` threads
    (the kernels release the GIL; each chunk runs the same compiled kernel, so the codes are the same bits).
    Outside it everything runs on the caller's thread: web workers are the parallelism, model jobs opt in."""
    previous = getattr(_local, "count", 1)
    _local.count = max(1, int(count))
    try:
        yield
    finally:
        _local.count = previous


def _chunks(rows: int, size: int) -> list[tuple[int, int]]:
    """[a, b) row ranges, one per thread of `threads` (one range when single-threaded or small)."""
    count = getattr(_local, "count", 1)
    if count <= 1 or rows < 2 or size < PARALLEL_MIN:
        return [(0, rows)]
    count = min(count, rows)
    return [(rows * i // count, rows * (i + 1) // count) for i in range(count)]


def _map(fn: Callable[[int, int], Any], chunks: list[tuple[int, int]]) -> list[Any]:
    if len(chunks) == 1:
        return [fn(*chunks[0])]
    pool = _pools.get(len(chunks))
    if pool is None:
        pool = _pools[len(chunks)] = ThreadPoolExecutor(len(chunks), thread_name_prefix="kernels")
    return list(pool.map(lambda c: fn(*c), chunks))


def run_quantize(x: npt.NDArray[np.float32], out: npt.NDArray[Any], lay: Layout, scale: npt.ArrayLike,
                 zp: npt.ArrayLike, lo: float, hi: float, fake: bool, kind: int = INT,
                 fp8: tuple[np.uint32, np.uint32] = _NO_FP8, report: bool = False) -> tuple[int, Sums | None]:
    """Quantize C-contiguous float32 `x` into `out` (same shape) by the layout `lay`; the clipped count (values
    outside [lo, hi] after rounding and NaN; float8: |x / scale| beyond max, NaN and +-inf), and with `report`
    the report's sums of the same pass (per parameter: per channel, per block, or one)."""
    xf, of = x.reshape(-1), out.reshape(-1)
    s, z = expand(scale, lay), expand(zp, lay)
    psig, pnoise = np.zeros(s.size if report else 1), np.zeros(s.size if report else 1)
    consts = (F32(lo), F32(hi), fake, kind, *fp8)
    if lay.rows:
        acc = np.zeros(4)
        fn = _report_rows if report else _quantize_rows
        clipped = int(fn(xf, of, lay.d, lay.dim, lay.seg, s, z, *consts, psig, pnoise, acc))
        parts = [acc]
    else:
        nb = (lay.d + lay.seg - 1) // lay.seg
        rows = xf.size // lay.d
        seg_fn = _report_segments if report else _quantize_segments
        if rows == 1 and nb == 1:  # one parameter (per tensor): any cut of the data is rows of it

            def one(a: int, b: int) -> tuple[int, Any]:
                acc, ps, pn = np.zeros(4), np.zeros(1), np.zeros(1)
                count = int(seg_fn(xf[a:b], of[a:b], b - a, b - a, s, z, *consts, *_GIVEN, ps, pn, acc))
                return count, (acc, ps, pn)

            done = _map(one, _chunks(xf.size, xf.size))
            if report:
                psig[0] = sum(float(ps[0]) for _, (_, ps, _) in done)
                pnoise[0] = sum(float(pn[0]) for _, (_, _, pn) in done)
            counts, parts = [count for count, _ in done], [acc for _, (acc, _, _) in done]
        else:
            counts, parts = _segments_by_rows(seg_fn, xf, of, lay, s, z, (*consts, *_GIVEN), psig, pnoise, report)
        clipped = sum(counts)
    return clipped, _sums(parts, psig, pnoise, lay, x.size) if report else None


def _segments_by_rows(fn: Any, xf: npt.NDArray[np.float32], of: npt.NDArray[Any], lay: Layout,
                      scale: npt.NDArray[np.float32], zp: npt.NDArray[np.float32], consts: tuple[Any, ...],
                      psig: npt.NDArray[np.float64], pnoise: npt.NDArray[np.float64], report: bool
                      ) -> tuple[list[int], list[npt.NDArray[np.float64]]]:
    """Run segments kernel `fn` over the rows of flat `xf` into `of`, split into row chunks over the threads (each
    chunk with its parameters and, with `report`, its slice of psig / pnoise): each chunk's count (-1: a dynamic
    kernel turned it down) and [sum e, max |e|, min x, max x]."""
    nb = (lay.d + lay.seg - 1) // lay.seg

    def one(a: int, b: int) -> tuple[int, npt.NDArray[np.float64]]:
        acc = np.zeros(4)
        ps, pn = (psig[a * nb:b * nb], pnoise[a * nb:b * nb]) if report else (psig, pnoise)
        count = int(fn(xf[a * lay.d:b * lay.d], of[a * lay.d:b * lay.d], lay.d, lay.seg, scale[a * nb:b * nb],
                       zp[a * nb:b * nb], *consts, ps, pn, acc))
        return count, acc

    done = _map(one, _chunks(xf.size // lay.d, xf.size))
    return [count for count, _ in done], [acc for _, acc in done]


def _sums(parts: list[npt.NDArray[np.float64]], psig: npt.NDArray[np.float64], pnoise: npt.NDArray[np.float64],
          lay: Layout, size: int) -> Sums:
    """The Sums of a report kernel's run: its per-parameter sums folded per channel by the layout, and the
    [sum e, max |e|, min x, max x] of each thread's part."""
    per = (psig.reshape(lay.outer, -1).sum(axis=0).reshape(-1, lay.inner).sum(axis=1),
           pnoise.reshape(lay.outer, -1).sum(axis=0).reshape(-1, lay.inner).sum(axis=1))
    worst = max(float(acc[1]) for acc in parts)
    if any(math.isnan(float(acc[1])) for acc in parts):
        worst = math.nan
    return Sums(per[0], per[1], sum(float(acc[0]) for acc in parts), worst, min(float(acc[2]) for acc in parts),
                max(float(acc[3]) for acc in parts), size)


def quantize_blocks(x: npt.NDArray[np.float32], axis: int, block_size: int, qrange: tuple[int, int],
                    crange: tuple[int, int], symmetric: bool, torch: bool, dtype: np.dtype[Any],
                    out: npt.NDArray[Any] | None = None, report: bool = False) -> Blocks | None:
    """Dynamic blocked quantize of float32 `x` in one pass (the segments kernels, `dynamic`):
    the result in `dtype`, the clipped count, flat scales and zero points (float32), with codes clipped to
    `qrange` and parameters for `crange` by the onnx (or `torch`) rule, and with `report` the report's sums per
    block, as run_quantize takes them; None for blocks along an inner axis, non-finite data or parameters that
    need the float64 fallback."""
    x = np.ascontiguousarray(x, dtype=F32)
    fn = _report_segments if report else _quantize_segments
    consts = (F32(qrange[0]), F32(qrange[1]), dtype == F32, INT, *_NO_FP8, *crange, symmetric, torch, True)
    if x.ndim == 1 and block_size >= x.size > 0 and out is None and not report:
        # One block, the whole of a flat array (engine/small.py's dynamic quantize of a small array): one call of the
        # kernel, without the layout, the threads' row chunks and the per-block bookkeeping, which took ~20 of this
        # function's ~30 us on a 2x3 array. (The plain kernel leaves psig / pnoise alone: one unused array.)
        out, scale, zp, unused = np.empty(x.size, dtype), np.empty(1, F32), np.empty(1, F32), np.zeros(1)
        clipped = int(fn(x, out, x.size, block_size, scale, zp, *consts, unused, unused, np.zeros(4)))
        return None if clipped < 0 else Blocks(out, clipped, scale, zp, None)
    lay = layout(x.shape, axis, block_size)
    if lay.rows or x.size == 0:
        return None
    if out is None:
        out = fresh_array(x.shape, dtype)
    count = x.size // lay.d * ((lay.d + lay.seg - 1) // lay.seg)
    scale, zp = np.empty(count, F32), np.empty(count, F32)
    psig, pnoise = np.zeros(count if report else 1), np.zeros(count if report else 1)
    counts, parts = _segments_by_rows(fn, x.reshape(-1), out.reshape(-1), lay, scale, zp, consts, psig, pnoise,
                                      report)
    if min(counts) < 0:
        return None
    return Blocks(out, sum(counts), scale, zp, _sums(parts, psig, pnoise, lay, x.size) if report else None)


def compare(x: npt.NDArray[np.float32], d: npt.NDArray[np.float32], axis: int | None) -> Sums:
    """The report's sums of values `d` against `x` (same shape), per channel along `axis`, over the elements where
    both are finite."""
    _, channels, inner = as_3d(x.shape, axis)
    xf = np.ascontiguousarray(x, dtype=F32).reshape(-1)
    df = np.ascontiguousarray(d, dtype=F32).reshape(-1)
    psig, pnoise, acc = np.zeros(channels), np.zeros(channels), np.zeros(5)
    if xf.size:
        _compare(xf, df, max(inner, 1), max(channels, 1), psig, pnoise, acc)
    return Sums(psig, pnoise, float(acc[0]), float(acc[1]), float(acc[2]), float(acc[3]), int(acc[4]))


def run_dequantize(q: npt.NDArray[Any], lay: Layout, scale: npt.ArrayLike, zp: npt.ArrayLike
                   ) -> npt.NDArray[np.float32]:
    """float32((q - zp) * scale) of C-contiguous codes `q` (int8 / uint8 / int16 / int32, or float8 values as
    float32) by the layout `lay`."""
    if q.dtype not in _DEQUANTIZE_DTYPES:
        q = q.astype(np.int32)
    q = np.ascontiguousarray(q)
    out = fresh_array(q.shape, F32)
    s, z = expand(scale, lay), expand(zp, lay)
    if lay.rows:
        _dequantize_rows(q.reshape(-1), out.reshape(-1), lay.d, lay.dim, lay.seg, s, z)
    else:
        _dequantize_segments(q.reshape(-1), out.reshape(-1), lay.d, lay.seg, s, z)
    return out


_DEQUANTIZE_DTYPES = frozenset(np.dtype(t) for t in _CODE_TYPES)


def quantize_counted(
    x: npt.NDArray[np.float32],
    params: QParams,
    qmin: int,
    qmax: int,
    out_dtype: npt.DTypeLike,
    *,
    dequantize_after: bool = False,
    count_clipped: bool = False,
    out: npt.NDArray[Any] | None = None,
    report: bool = False,
) -> tuple[npt.NDArray[Any], int, Sums | None]:
    """Integer codes of float32 `x` in `out_dtype` (or, with `dequantize_after`, the fake-quantized float32), per
    tensor or per channel (`params.axis`), and with `count_clipped` the number of elements whose
    rint(x / scale) + zp falls outside [qmin, qmax] (NaN counts: it has no code; else 0). NaN gets the zero
    point's code (fake: 0.0); +-inf saturate. With `report`, the quality report's sums of the same pass.

    `out` may be `x` itself for fake quantization: each element is read before its result is written."""
    x = np.ascontiguousarray(x, dtype=F32)
    dtype = np.dtype(F32 if dequantize_after else out_dtype)
    if out is None:
        out = fresh_array(x.shape, dtype)
    elif out.shape != x.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous array of the input's shape and the result's dtype")
    if x.size == 0:
        return out, 0, (compare(x, x, params.axis) if report else None)
    clipped, sums = run_quantize(x, out, layout(x.shape, params.axis), params.scale, params.zero_point, qmin, qmax,
                                 dequantize_after, report=report)
    return out, clipped if count_clipped else 0, sums


def quantize(
    x: npt.NDArray[np.float32],
    params: QParams,
    qmin: int,
    qmax: int,
    out_dtype: npt.DTypeLike,
    *,
    dequantize_after: bool = False,
) -> npt.NDArray[Any]:
    """quantize_counted without the count."""
    return quantize_counted(x, params, qmin, qmax, out_dtype, dequantize_after=dequantize_after)[0]


def dequantize(q: npt.NDArray[np.generic], params: QParams) -> npt.NDArray[np.float32]:
    """y = float32((q - zp) * scale), per tensor, per channel or per block."""
    q = np.asarray(q)
    return run_dequantize(q, layout(q.shape, params.axis, params.block_size), params.scale, params.zero_point)


def minmax(x: npt.NDArray[Any], axis: int | None = None) -> tuple[Any, Any]:
    """(min, max) of `x` as np.min / np.max give them (NaN propagates): scalars of x's dtype, or with `axis` one
    value per index along it (every other axis reduced). float32 in one compiled pass (split over the job's
    threads); other dtypes (dequantize's check of integer codes) by numpy's SIMD reductions, as fast there
    (numba widens small integers)."""
    if x.size == 0 or x.dtype != F32:
        axes = None if axis is None else tuple(i for i in range(x.ndim) if i != axis)
        return np.min(x, axis=axes), np.max(x, axis=axes)
    if axis is None and x.size < PARALLEL_MIN:  # a small array: numpy's reductions cost the fewest microseconds
        return np.minimum.reduce(x, axis=None), np.maximum.reduce(x, axis=None)
    x = np.ascontiguousarray(x)
    flat = x.reshape(-1)
    if axis is None:  # one range: any cut of the data is a segment of it
        chunks = _chunks(flat.size, flat.size)
        part = {a: i for i, (a, _) in enumerate(chunks)}
        lo, hi = np.empty(len(chunks), F32), np.empty(len(chunks), F32)
        _map(lambda a, b: _minmax_segments(flat[a:b], b - a, b - a, lo[part[a]:], hi[part[a]:]), chunks)
        return _reduce_parts(lo, hi)
    lay = layout(x.shape, axis)
    if not lay.rows:
        n = x.size // lay.seg
        lo, hi = np.empty(n, x.dtype), np.empty(n, x.dtype)
        nb = (lay.d + lay.seg - 1) // lay.seg
        _map(lambda a, b: _minmax_segments(flat[a * lay.d:b * lay.d], lay.d, lay.seg, lo[a * nb:b * nb],
                                           hi[a * nb:b * nb]), _chunks(x.size // lay.d, x.size))
        channels = x.shape[axis]  # segments are (outer, channels) runs, or the whole of a single channel
        return lo.reshape(-1, channels).min(axis=0), hi.reshape(-1, channels).max(axis=0)
    # Short runs per channel: numpy's element-wise reductions over the outer rows (SIMD across the row, no per-lane
    # state) measured 2.6x faster than _minmax_rows on [1024, 4096] along axis 1.
    axes = tuple(i for i in range(x.ndim) if i != axis)
    return np.min(x, axis=axes), np.max(x, axis=axes)


def _reduce_parts(lo: npt.NDArray[np.float32], hi: npt.NDArray[np.float32]) -> tuple[np.float32, np.float32]:
    """The range of a few parts' ranges, as float32 scalars (NaN in any part: both NaN)."""
    if len(lo) == 1:
        return lo[0], hi[0]
    low, high = lo.min(), hi.max()
    if low != low or high != high:
        return F32(np.nan), F32(np.nan)
    return low, high


def block_extremes(x: npt.NDArray[np.float32], axis: int, block_size: int, absolute: bool
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Flat (min, max) of each block of `block_size` along `axis` (NaN propagates), in the initializer's C order;
    `absolute`: (-max |x|, max |x|)."""
    x = np.ascontiguousarray(x, dtype=F32)
    lay = layout(x.shape, axis, block_size)
    outer, dim, inner = as_3d(x.shape, axis)
    count = outer * (-(-dim // block_size)) * inner
    lo, hi = np.empty(count, F32), np.empty(count, F32)
    if lay.rows:
        _minmax_rows(x.reshape(-1), lay.d, lay.dim, lay.seg, lo, hi)
        if absolute:
            hi = np.maximum(np.abs(lo), np.abs(hi))
            lo = np.negative(hi)
        return lo, hi
    if absolute:
        _absmax_segments(x.reshape(-1), lay.d, lay.seg, hi)
        return np.negative(hi), hi
    _minmax_segments(x.reshape(-1), lay.d, lay.seg, lo, hi)
    return lo, hi
