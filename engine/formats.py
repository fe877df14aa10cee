"""Kernels of the number formats beyond 8/16-bit integers: blocked (grouped) integer quantization, float32 ->
bfloat16 and float32 -> float8 (E4M3FN, E5M2) rounding, all exact and in numpy.

Blocked quantization (ONNX opset-21 QuantizeLinear with `block_size`): along `axis`, element i uses the scale and
zero point of block i // B; the parameters have the data's shape with `ceil(dim / B)` along `axis` (the last
block may be partial). q = clip(rint(x / s) + zp, qmin, qmax), the division in float32, as per channel.

bfloat16 (round to nearest even on the bit pattern): bits16 = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 for non-NaN
u; any NaN becomes the quiet NaN 0x7FC0 | sign. The result is returned decoded (bits16 << 16, as float32).

float8: v = float32(x / scale), clipped to +-max (saturating; +-inf -> +-max; NaN stays NaN), then rounded to the
nearest float8 value, ties to even, with one float32 addition and one subtraction: with E = max(exponent(|v|),
emin) the float8 quantum at |v| is 2^(E - m) (m mantissa bits; subnormals share emin's quantum), and for
C = 1.5 * 2^(E - m + 23), |v| + C lies in [2^(E-m+23), 2^(E-m+24)) where the float32 spacing is exactly that
quantum, so the hardware's round-to-nearest-even of the sum *is* the float8 rounding (C / quantum = 3 * 2^22 is
even: parity, hence ties, are kept); subtracting C is exact. C's bit pattern comes from |v|'s exponent field by
integer operations. The result is returned decoded (a float32 holding the float8 value).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = np.float32
FloatArray = npt.NDArray[np.float32]
# The `clip` ufunc behind np.clip (its Python wrapper costs microseconds per call), as in kernels.py.
_clip: Any = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None)
if not isinstance(_clip, np.ufunc):
    _clip = np.clip
BLOCK = 64 * 1024  # elements per cache block of the blocked and float8 kernels
BF16_BLOCK = 256 * 1024  # the bfloat16 cast's (measured best of 16 Ki .. 256 Ki: fewer calls, still in L2)

FP8_MAX = {"e4m3fn": 448.0, "e5m2": 57344.0}
_FP8_MANTISSA = {"e4m3fn": 3, "e5m2": 2}
_FP8_EMIN = {"e4m3fn": -6, "e5m2": -14}


# ---------------------------------------------------------------------- blocked layout
def block_count(dim: int, block_size: int) -> int:
    return -(-dim // block_size)


def block_shape(shape: tuple[int, ...], axis: int, block_size: int) -> tuple[int, ...]:
    """The shape of the scale initializer: the data's, with ceil(dim / B) along `axis`."""
    out = list(shape)
    out[axis] = block_count(shape[axis], block_size)
    return tuple(out)


def _layout(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, shape[axis], inner


def _pieces(shape: tuple[int, ...], axis: int, block_size: int) -> Iterator[tuple[Any, Any, Any]]:
    """(data index, parameter index, shape (rows, blocks, B, inner)) of cache-sized pieces of the (outer, dim,
    inner) view: several whole rows at a time when a row is small, else runs of blocks within a row; the partial
    last block of each row is a piece of its own."""
    outer, dim, inner = _layout(shape, axis)
    full = dim // block_size
    rest = dim - full * block_size
    row = dim * inner
    if row <= BLOCK:
        step = max(1, BLOCK // max(row, 1))
        for o0 in range(0, outer, step):
            rows = slice(o0, min(outer, o0 + step))
            n = rows.stop - o0
            if full:
                yield (rows, slice(0, full * block_size)), (rows, slice(0, full)), (n, full, block_size, inner)
            if rest:
                yield (rows, slice(full * block_size, dim)), (rows, slice(full, full + 1)), (n, 1, rest, inner)
        return
    run = max(1, BLOCK // max(block_size * inner, 1))
    for o in range(outer):
        rows = slice(o, o + 1)
        for b0 in range(0, full, run):
            b1 = min(full, b0 + run)
            yield (rows, slice(b0 * block_size, b1 * block_size)), (rows, slice(b0, b1)), (1, b1 - b0, block_size,
                                                                                            inner)
        if rest:
            yield (rows, slice(full * block_size, dim)), (rows, slice(full, full + 1)), (1, 1, rest, inner)


def block_minmax(x: FloatArray, axis: int, block_size: int, raw: bool = False,
                 absolute: bool = False) -> tuple[FloatArray, FloatArray]:
    """Minimum and maximum of each block (NaN and +-inf left out; a block without finite values gives 0, 0);
    `raw`: as they are (NaN where a block holds NaN). `absolute` (for symmetric parameters, which need no more):
    -amax and amax of each block instead, amax = max |x| (one reduction instead of two)."""
    outer, dim, inner = _layout(x.shape, axis)
    nb = block_count(dim, block_size)
    x3 = np.ascontiguousarray(x).reshape(outer, dim, inner)
    lo = np.empty((outer, nb, inner), F32)
    hi = np.empty((outer, nb, inner), F32)
    if inner == 1 and dim <= BLOCK:
        # Blocks along the last axis: one reduceat per run of whole rows (faster than a reduction over a short
        # last axis), the partial last block included.
        step = max(1, BLOCK // dim)
        starts = np.arange(nb, dtype=np.intp) * block_size
        buf = np.empty(step * dim, F32) if absolute else None
        for o0 in range(0, outer, step):
            o1 = min(outer, o0 + step)
            flat = x3[o0:o1].reshape(-1)
            idx = (np.arange(o1 - o0, dtype=np.intp)[:, None] * dim + starts[None, :]).reshape(-1)
            if buf is not None:
                mag = np.abs(flat, out=buf[:flat.size])
                hi[o0:o1, :, 0] = np.maximum.reduceat(mag, idx).reshape(o1 - o0, nb)
                np.negative(hi[o0:o1], out=lo[o0:o1])
                continue
            lo[o0:o1, :, 0] = np.minimum.reduceat(flat, idx).reshape(o1 - o0, nb)
            hi[o0:o1, :, 0] = np.maximum.reduceat(flat, idx).reshape(o1 - o0, nb)
    else:
        for xi, pi, shape4 in _pieces(x.shape, axis, block_size):
            v = x3[xi].reshape(shape4)
            lo[pi] = np.minimum.reduce(v, axis=2)
            hi[pi] = np.maximum.reduce(v, axis=2)
    if raw:
        target = block_shape(x.shape, axis, block_size)
        return lo.reshape(target), hi.reshape(target)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        finite = np.where(np.isfinite(x3), x3, np.nan)
        for xi, pi, shape4 in _pieces(x.shape, axis, block_size):
            v = finite[xi].reshape(shape4)
            lo[pi] = np.fmin.reduce(v, axis=2)
            hi[pi] = np.fmax.reduce(v, axis=2)
        lo, hi = np.nan_to_num(lo, nan=0.0), np.nan_to_num(hi, nan=0.0)
    target = block_shape(x.shape, axis, block_size)
    return lo.reshape(target), hi.reshape(target)


def quantize_blocked(x: FloatArray, scale: FloatArray, zero_point: npt.NDArray[np.int64], axis: int,
                     block_size: int, qmin: int, qmax: int, out_dtype: Any, dequantize_after: bool,
                     count_clipped: bool, nan_possible: bool = True) -> tuple[npt.NDArray[Any], int]:
    """Blocked QuantizeLinear (codes in `out_dtype`) or, with `dequantize_after`, QuantizeLinear then
    DequantizeLinear (float32). NaN gets its block's zero point's code (0.0 fake-quantized). Returns the result
    and the number of clipped elements (NaN included) when `count_clipped`, else 0."""
    outer, dim, inner = _layout(x.shape, axis)
    nb = block_count(dim, block_size)
    x3 = np.ascontiguousarray(x).reshape(outer, dim, inner)
    s3 = scale.astype(F32).reshape(outer, nb, inner)
    z3 = zero_point.astype(F32).reshape(outer, nb, inner)
    has_zp = bool(np.any(z3))
    out = np.empty(x.shape, F32 if dequantize_after else out_dtype)
    o3 = out.reshape(outer, dim, inner)
    lo_f, hi_f = F32(qmin), F32(qmax)
    clipped = 0

    def core(v: Any, sc: Any, zc: Any, b: Any, dst: Any) -> int:
        """One piece: b = clip(rint(v / s) + zp) (or its dequantization) into dst; the clipped count."""
        n = 0
        np.divide(v, sc, out=b)
        np.rint(b, out=b)
        if has_zp:
            np.add(b, zc, out=b)
        elif dequantize_after:
            np.add(b, F32(0), out=b)  # -0.0 + 0 = +0.0: a zero comes out as +0.0, as from the unfused (q - zp)
        if count_clipped:
            lo_b, hi_b = np.minimum.reduce(b, axis=None), np.maximum.reduce(b, axis=None)
            if not (lo_b >= lo_f and hi_b <= hi_f):  # (NaN fails both)
                n = b.size - int(np.count_nonzero((b >= lo_f) & (b <= hi_f)))
        _clip(b, lo_f, hi_f, out=b)
        if nan_possible and np.isnan(np.minimum.reduce(b, axis=None)):
            np.copyto(b, np.broadcast_to(zc, b.shape), where=np.isnan(b))
        if dequantize_after:
            if has_zp:
                np.subtract(b, zc, out=b)
            np.multiply(b, sc, out=b)
        dst[...] = b
        return n

    if inner == 1 and dim <= BLOCK:
        # Blocks along the last axis: runs of whole rows, each block's scale repeated over its elements (the
        # partial last block included), then flat contiguous ufuncs.
        step = max(1, BLOCK // dim)
        counts = np.full(nb, block_size, dtype=np.intp)
        counts[-1] = dim - (nb - 1) * block_size
        counts = np.tile(counts, step)
        s_flat, z_flat = s3.reshape(-1), z3.reshape(-1)
        buf = np.empty(step * dim, F32)
        o_flat = out.reshape(-1)
        x_flat = x3.reshape(-1)
        for o0 in range(0, outer, step):
            o1 = min(outer, o0 + step)
            k = (o1 - o0) * nb
            sc = np.repeat(s_flat[o0 * nb:o1 * nb], counts[:k])
            zc = np.repeat(z_flat[o0 * nb:o1 * nb], counts[:k]) if has_zp or nan_possible else F32(0)
            size = (o1 - o0) * dim
            clipped += core(x_flat[o0 * dim:o1 * dim], sc, zc, buf[:size], o_flat[o0 * dim:o1 * dim])
        return out, clipped
    buf = np.empty(BLOCK + block_size * inner, F32)
    for xi, pi, shape4 in _pieces(x.shape, axis, block_size):
        v = x3[xi].reshape(shape4)
        b = buf[:v.size].reshape(shape4)
        clipped += core(v, s3[pi][:, :, None, :], z3[pi][:, :, None, :], b, o3[xi].reshape(shape4))
    return out, clipped


def dequantize_blocked(codes: npt.NDArray[Any], scale: FloatArray, zero_point: npt.NDArray[np.int64], axis: int,
                       block_size: int) -> FloatArray:
    """float32((q - zp) * s) with each block's parameters."""
    outer, dim, inner = _layout(codes.shape, axis)
    nb = block_count(dim, block_size)
    c3 = codes.reshape(outer, dim, inner)
    s3 = scale.astype(F32).reshape(outer, nb, inner)
    z3 = zero_point.astype(F32).reshape(outer, nb, inner)
    out = np.empty(codes.shape, F32)
    o3 = out.reshape(outer, dim, inner)
    for xi, pi, shape4 in _pieces(codes.shape, axis, block_size):
        b = c3[xi].reshape(shape4).astype(F32)
        np.subtract(b, z3[pi][:, :, None, :], out=b)
        np.multiply(b, s3[pi][:, :, None, :], out=b)
        o3[xi] = b.reshape(o3[xi].shape)
    return out


# ---------------------------------------------------------------------- bfloat16
def to_bfloat16(x: FloatArray) -> tuple[FloatArray, int, Any, Any]:
    """float32 -> bfloat16 (round to nearest even), decoded back to float32; NaN -> quiet NaN with its sign.
    Also returns how many finite values overflowed to +-inf, and the data's minimum and maximum (NaN if it holds
    any), taken block by block while each is in cache, so that the caller needs no pass of its own."""
    src = np.ascontiguousarray(x, dtype=F32).reshape(-1)
    out = np.empty(src.size, F32)
    bits = out.view(np.uint32)
    overflow = 0
    lows, highs = [], []
    for start in range(0, src.size, BF16_BLOCK):
        f = src[start:start + BF16_BLOCK]
        u = f.view(np.uint32)
        t = bits[start:start + BF16_BLOCK]
        np.right_shift(u, np.uint32(16), out=t)
        np.bitwise_and(t, np.uint32(1), out=t)
        np.add(t, np.uint32(0x7FFF), out=t)
        np.add(t, u, out=t)
        np.bitwise_and(t, np.uint32(0xFFFF0000), out=t)
        b_lo, b_hi = np.minimum.reduce(f), np.maximum.reduce(f)
        lows.append(b_lo)
        highs.append(b_hi)
        if np.isnan(b_lo) or np.isnan(b_hi):
            nan = np.isnan(f)
            t[nan] = (u[nan] & np.uint32(0x80000000)) | np.uint32(0x7FC00000)
        if not (abs(b_lo) < 3.3e38 and abs(b_hi) < 3.3e38):
            o = out[start:start + BF16_BLOCK]
            overflow += int(np.count_nonzero(np.isinf(o) & np.isfinite(f)))
    return out.reshape(x.shape), overflow, F32(np.min(lows)), F32(np.max(highs))


def is_bfloat16(x: FloatArray) -> npt.NDArray[np.bool_]:
    """Which float32 values are bfloat16 values (their low 16 bits are zero)."""
    return np.asarray((np.ascontiguousarray(x, F32).view(np.uint32) & np.uint32(0xFFFF)) == 0)


# ---------------------------------------------------------------------- float8
def fp8_round(v: FloatArray, fmt: str, out: FloatArray | None = None, saturate: bool = True) -> FloatArray:
    """Saturate float32 `v` to +-max and round to the nearest float8 `fmt` value, ties to even (module
    docstring); NaN stays NaN. In place when `out` is `v`. `saturate` False skips the clip, for callers that know
    every |v| is below max * 1.03 (which rounds to at most max) and finite."""
    top = F32(FP8_MAX[fmt])
    emin_bits = np.uint32((127 + _FP8_EMIN[fmt]) << 23)
    offset = np.uint32(((23 - _FP8_MANTISSA[fmt]) << 23) | 0x00400000)  # C = 1.5 * 2^(E - m + 23)
    if saturate:
        res = np.clip(v, -top, top, out=out)
    elif out is not None:
        res = out
    else:
        res = v.copy()
    a = np.abs(res)
    c = a.view(np.uint32) & np.uint32(0x7F800000)
    np.maximum(c, emin_bits, out=c)
    np.add(c, offset, out=c)
    cf = c.view(F32)
    np.add(a, cf, out=a)
    np.subtract(a, cf, out=a)
    np.copysign(a, res, out=res)
    return res


def quantize_fp8(x: FloatArray, scale3: FloatArray, shape3: tuple[int, int, int], fmt: str,
                 dequantize_after: bool, saturate: bool = True) -> FloatArray:
    """float8 QuantizeLinear (saturate=1) of `x` viewed as (outer, channels, inner) with a (1, C, 1) or (1, 1, 1)
    float32 scale: the float8 values decoded to float32 or, with `dequantize_after`, times the scale."""
    x3 = np.ascontiguousarray(x, F32).reshape(shape3)
    out = np.empty(x3.shape, F32)
    per_tensor = scale3.size == 1
    s_scalar = F32(scale3.reshape(-1)[0])
    with np.errstate(over="ignore", invalid="ignore"):  # x / scale may overflow: it saturates
        for sl, s in _cast_blocks(shape3, scale3, per_tensor, s_scalar):
            b = np.divide(x3[sl], s, dtype=F32)
            fp8_round(b, fmt, out=b, saturate=saturate)
            if dequantize_after:
                np.multiply(b, s, out=b)
            out[sl] = b
    return out.reshape(x.shape)


def _cast_blocks(shape3: tuple[int, int, int], scale3: FloatArray, per_tensor: bool, s_scalar: Any
                 ) -> Iterator[tuple[Any, Any]]:
    outer, channels, inner = shape3
    if per_tensor:
        if inner >= BLOCK or channels * inner >= BLOCK:
            for o in range(outer):
                for c in range(channels):
                    for i0 in range(0, inner, BLOCK):
                        yield (slice(o, o + 1), slice(c, c + 1), slice(i0, i0 + BLOCK)), s_scalar
            return
        step = max(1, BLOCK // max(channels * inner, 1))
        for o0 in range(0, outer, step):
            yield (slice(o0, o0 + step), slice(None), slice(None)), s_scalar
        return
    for o in range(outer):
        step = max(1, BLOCK // max(inner, 1))
        for c0 in range(0, channels, step):
            sc = slice(c0, c0 + step)
            if inner > BLOCK:
                for i0 in range(0, inner, BLOCK):
                    yield (slice(o, o + 1), sc, slice(i0, i0 + BLOCK)), scale3[:, sc]
            else:
                yield (slice(o, o + 1), sc, slice(None)), scale3[:, sc]


def is_fp8(v: FloatArray, fmt: str) -> npt.NDArray[np.bool_]:
    """Which float32 values are finite float8 `fmt` values."""
    with np.errstate(invalid="ignore"):
        r = fp8_round(np.asarray(v, F32).copy(), fmt)
        return np.asarray(np.isfinite(v) & (r == v))


# ---------------------------------------------------------------------- bit patterns (the wire formats)
FP8_DTYPES = {"float8_e4m3fn": "e4m3fn", "float8_e5m2": "e5m2"}  # the wire (ml_dtypes) names
_FP8_EXP_BITS = {"e4m3fn": 4, "e5m2": 5}
_FP8_FINITE = {"e4m3fn": 0x7F, "e5m2": 0x7C}  # codes below this (sign bit clear) are the finite values
_FP8_NAN = {"e4m3fn": 0x7F, "e5m2": 0x7E}  # the quiet NaN written (ml_dtypes' and ONNX's choice)
_FP8_TABLES: dict[str, FloatArray] = {}


def fp8_table(fmt: str) -> FloatArray:
    """The float32 value of each of the 256 float8 `fmt` bit patterns (E4M3FN: S.1111.111 is NaN, no infinity;
    E5M2: IEEE-like, exponent 31 is infinity or NaN)."""
    table = _FP8_TABLES.get(fmt)
    if table is None:
        m, e_bits = _FP8_MANTISSA[fmt], _FP8_EXP_BITS[fmt]
        bias = (1 << (e_bits - 1)) - 1
        code = np.arange(256, dtype=np.int64)
        e, f = (code >> m) & ((1 << e_bits) - 1), code & ((1 << m) - 1)
        mag = np.where(e == 0, f * 2.0 ** (1 - bias - m), (1 + f / 2.0**m) * 2.0 ** (e - bias))
        if fmt == "e5m2":
            mag = np.where(e == 31, np.where(f == 0, np.inf, np.nan), mag)
        else:
            mag = np.where((e == 15) & (f == 7), np.nan, mag)
        table = np.where(code >= 128, -mag, mag).astype(F32)
        _FP8_TABLES[fmt] = table
    return table


def fp8_decode(bits: npt.NDArray[np.uint8], fmt: str) -> FloatArray:
    """float8 bit patterns (uint8) to their float32 values."""
    return fp8_table(fmt)[np.asarray(bits, np.uint8)]


def fp8_encode(values: FloatArray, fmt: str) -> npt.NDArray[np.uint8]:
    """float32 values that are float8 `fmt` values (or NaN, or +-inf for E5M2) to their bit patterns; the sign of
    zero and of NaN is kept."""
    v = np.asarray(values, F32)
    positive = fp8_table(fmt)[:_FP8_FINITE[fmt]]  # strictly increasing from +0
    mag = np.abs(v)
    with np.errstate(invalid="ignore"):
        idx = np.searchsorted(positive, np.where(np.isnan(mag), F32(0), mag)).astype(np.uint8)
    idx[np.isnan(v)] = _FP8_NAN[fmt]
    return np.asarray(idx | np.where(np.signbit(v), np.uint8(0x80), np.uint8(0)).astype(np.uint8))


def bf16_decode(bits: npt.NDArray[np.uint16]) -> FloatArray:
    """bfloat16 bit patterns (uint16) to float32 (the bits are float32's upper half: exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << np.uint32(16)).view(F32)


def bf16_encode(values: FloatArray) -> npt.NDArray[np.uint16]:
    """float32 values that are bfloat16 values to their bit patterns (float32's upper half)."""
    return (np.ascontiguousarray(values, F32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def pack_int4(codes: npt.NDArray[Any]) -> bytes:
    """4-bit codes (-8..7 or 0..15), C order, two per byte as ONNX packs them: element 2i in the low nibble,
    2i+1 in the high nibble; an odd count is padded with a zero nibble."""
    flat = np.ascontiguousarray(codes).reshape(-1).astype(np.uint8) & np.uint8(0x0F)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    return bytes(flat[0::2] | (flat[1::2] << np.uint8(4)))


def unpack_int4(packed: npt.NDArray[np.uint8], count: int, signed: bool) -> npt.NDArray[Any]:
    """The first `count` 4-bit codes of ONNX-packed bytes: int8 -8..7 when `signed`, else uint8 0..15."""
    raw = np.asarray(packed, np.uint8)
    out = np.empty(raw.size * 2, np.uint8)
    out[0::2] = raw & np.uint8(0x0F)
    out[1::2] = raw >> np.uint8(4)
    codes = out[:count]
    if signed:
        return ((codes.astype(np.int8) ^ np.int8(8)) - np.int8(8)).astype(np.int8)
    return codes.copy()
