"""The number formats beyond 8/16-bit integers: blocked (grouped) integer and float8 quantization, float32 ->
bfloat16 and float32 -> float8 (E4M3FN, E5M2) rounding, all exact, through the fused kernels of kernels.py.

Blocked quantization (ONNX opset-21 QuantizeLinear with `block_size`): along `axis`, element i uses the scale and
zero point of block i // B; the parameters have the data's shape with `ceil(dim / B)` along `axis` (the last
block may be partial). q = clip(rint(x / s) + zp, qmin, qmax), the division in float32, as per channel.

bfloat16 (round to nearest even on the bit pattern): bits16 = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 for non-NaN
u; any NaN becomes the quiet NaN 0x7FC0 | sign. The result is returned decoded (bits16 << 16, as float32).

float8: v = float32(x / scale), saturated to +-max (+-inf -> +-max; NaN stays NaN), then rounded to the nearest
float8 value, ties to even (the rounding is explained in kernels.py). The result is returned decoded (a float32
holding the float8 value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels
from .jit import kernel
from .pages import fresh_array

F32 = np.float32
LANES = 16  # the bfloat16 cast's per-lane counters (a single counter would serialise its vector loop)
FloatArray = npt.NDArray[np.float32]

FP8_MAX = {"e4m3fn": 448.0, "e5m2": 57344.0}
# The largest |v| that rounds to max (to nearest, ties to even) rather than beyond it: max + half its quantum,
# itself included when max's last mantissa bit is even (E4M3FN: 1.110b * 2^8, the tie 464 rounds down), else
# the float32 below it (E5M2: 1.11b * 2^15, the tie 61440 rounds up to 2^16). Beyond it a value saturates.
FP8_LIMIT = {"e4m3fn": 464.0, "e5m2": float(np.nextafter(F32(61440.0), F32(0)))}
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


def blocks_as_rows(x: FloatArray, axis: int, block_size: int) -> FloatArray:
    """The blocks of `x` as the rows of a (blocks, block_size) array, in the C order of the block parameters
    (calibration collects one range per row, as per channel). A partial last block is padded with its own last
    value: its minimum and maximum are unchanged (histogram methods see that value a few more times)."""
    outer, dim, inner = kernels.as_3d(x.shape, axis)
    x3 = np.ascontiguousarray(x, F32).reshape(outer, dim, inner)
    pad = block_count(dim, block_size) * block_size - dim
    if pad:
        x3 = np.concatenate([x3, np.repeat(x3[:, -1:], pad, axis=1)], axis=1)
    nb = x3.shape[1] // block_size
    # (outer, nb, B, inner) -> (outer, nb, inner, B): each block's elements contiguous, blocks in C order.
    return np.ascontiguousarray(x3.reshape(outer, nb, block_size, inner).transpose(0, 1, 3, 2)).reshape(-1,
                                                                                                      block_size)


def block_minmax(x: FloatArray, axis: int, block_size: int, raw: bool = False,
                 absolute: bool = False) -> tuple[FloatArray, FloatArray]:
    """Minimum and maximum of each block (NaN and +-inf left out; a block without finite values gives 0, 0);
    `raw`: as they are (NaN where a block holds NaN). `absolute` (for symmetric parameters, which need no more):
    -amax and amax of each block instead, amax = max |x| (one reduction instead of two)."""
    target = block_shape(x.shape, axis, block_size)
    lo, hi = kernels.block_extremes(x, axis, block_size, absolute)
    if not raw and not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        # The range over finite values: the rare case of non-finite data, which is allowed to cost a pass.
        finite = np.where(np.isfinite(x), x, F32(np.nan))
        lo, hi = kernels.block_extremes(finite, axis, block_size, absolute)  # NaN marks the blocks to redo
        bad = np.nonzero(np.isnan(lo) | np.isnan(hi))[0]
        if bad.size:
            x3 = finite.reshape(kernels.as_3d(x.shape, axis))
            _, dim, inner = x3.shape
            nb = block_count(dim, block_size)
            for flat in bad:
                o, rest = divmod(int(flat), nb * inner)
                k, i = divmod(rest, inner)
                v = x3[o, k * block_size:(k + 1) * block_size, i]
                v = v[~np.isnan(v)]
                if absolute:
                    v = np.abs(v)
                lo[flat] = (-v.max() if absolute else v.min()) if v.size else F32(0)
                hi[flat] = v.max() if v.size else F32(0)
    return lo.reshape(target), hi.reshape(target)


def quantize_blocked(x: FloatArray, scale: FloatArray, zero_point: npt.NDArray[np.int64], axis: int,
                     block_size: int, qmin: int, qmax: int, out_dtype: Any, dequantize_after: bool,
                     count_clipped: bool, report: bool = False
                     ) -> tuple[npt.NDArray[Any], int, kernels.Sums | None]:
    """Blocked QuantizeLinear (codes in `out_dtype`) or, with `dequantize_after`, QuantizeLinear then
    DequantizeLinear (float32). NaN gets its block's zero point's code (0.0 fake-quantized). Returns the result
    and the number of clipped elements (NaN included) when `count_clipped`, else 0, and with `report` the quality
    report's sums of the same pass."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = fresh_array(x.shape, F32 if dequantize_after else out_dtype)
    clipped, sums = kernels.run_quantize(x, out, kernels.layout(x.shape, axis, block_size), scale, zero_point, qmin,
                                         qmax, dequantize_after, report=report)
    return out, clipped if count_clipped else 0, sums


def dequantize_blocked(codes: npt.NDArray[Any], scale: FloatArray, zero_point: npt.NDArray[np.int64], axis: int,
                       block_size: int) -> FloatArray:
    """float32((q - zp) * s) with each block's parameters."""
    return kernels.run_dequantize(np.asarray(codes), kernels.layout(codes.shape, axis, block_size), scale,
                                  zero_point)


# ---------------------------------------------------------------------- bfloat16
@kernel("UniTuple(int64, 2)(uint32[::1], uint32[::1])")
def _bfloat16(u: Any, out: Any) -> Any:
    """Round float32 bit patterns `u` to bfloat16 (kept in the upper half of `out`); (finite values that became
    +-inf, non-finite inputs), each counted in its own lanes."""
    overflow = np.zeros(LANES, np.int32)
    nonfinite = np.zeros(LANES, np.int32)
    n = u.size
    m = n // LANES * LANES
    for i0 in range(0, m, LANES):
        for j in range(LANES):
            i = np.uint64(i0 + j)
            v = u[i]
            special = (v & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
            nan = special and (v & np.uint32(0x007FFFFF)) != np.uint32(0)
            r = (v + np.uint32(0x7FFF) + ((v >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
            r = (v & np.uint32(0x80000000)) | np.uint32(0x7FC00000) if nan else r
            nonfinite[j] += np.int32(special)
            overflow[j] += np.int32(not special and (r & np.uint32(0x7FFFFFFF)) == np.uint32(0x7F800000))
            out[i] = r
    over, bad = overflow.sum(), nonfinite.sum()
    for t in range(m, n):
        v = u[t]
        special = (v & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
        nan = special and (v & np.uint32(0x007FFFFF)) != np.uint32(0)
        r = (v + np.uint32(0x7FFF) + ((v >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
        r = (v & np.uint32(0x80000000)) | np.uint32(0x7FC00000) if nan else r
        bad += special
        over += not special and (r & np.uint32(0x7FFFFFFF)) == np.uint32(0x7F800000)
        out[t] = r
    return over, bad


BFLOAT16_KERNEL = _bfloat16  # (engine.jobs warms it)


def to_bfloat16(x: FloatArray) -> tuple[FloatArray, int, int]:
    """float32 -> bfloat16 (round to nearest even), decoded back to float32; NaN -> quiet NaN with its sign.
    Also returns how many finite values overflowed to +-inf and how many inputs were not finite, counted in the
    same pass, so that the caller needs no pass of its own."""
    src = np.ascontiguousarray(x, dtype=F32)
    out = fresh_array(src.shape, F32)
    overflow, nonfinite = _bfloat16(src.reshape(-1).view(np.uint32), out.reshape(-1).view(np.uint32))
    return out, int(overflow), int(nonfinite)


def is_bfloat16(x: FloatArray) -> npt.NDArray[np.bool_]:
    """Which float32 values are bfloat16 values (their low 16 bits are zero)."""
    return np.asarray((np.ascontiguousarray(x, F32).view(np.uint32) & np.uint32(0xFFFF)) == 0)


# ---------------------------------------------------------------------- float8
def _fp8_constants(fmt: str) -> tuple[np.uint32, np.uint32]:
    """The exponent floor (emin's bits) and the offset that turns |v|'s exponent bits into C's."""
    return (np.uint32((127 + _FP8_EMIN[fmt]) << 23),
            np.uint32(((23 - _FP8_MANTISSA[fmt]) << 23) | 0x00400000))  # C = 1.5 * 2^(E - m + 23)


def quantize_fp8(x: FloatArray, scale: npt.ArrayLike, axis: int | None, block_size: int | None, fmt: str,
                 dequantize_after: bool, report: bool = False) -> tuple[FloatArray, int, kernels.Sums | None]:
    """float8 QuantizeLinear (saturate=1) of `x` with per-tensor, per-channel (`axis`) or per-block scales: the
    float8 values decoded to float32 or, with `dequantize_after`, times the scale. Also the count of values that
    saturated (|x / scale| beyond FP8_LIMIT, +-inf) or are NaN, and with `report` the quality report's sums."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = fresh_array(x.shape, F32)
    top = FP8_MAX[fmt]
    scale = np.asarray(scale, F32)
    return (out, *kernels.run_quantize(x, out, kernels.layout(x.shape, axis, block_size), scale,
                                       np.zeros(scale.shape, F32), -FP8_LIMIT[fmt], top, dequantize_after,
                                       kernels.FP8, _fp8_constants(fmt), report=report))


def fp8_round(v: FloatArray, fmt: str) -> FloatArray:
    """Saturate float32 `v` to +-max and round to the nearest float8 `fmt` value, ties to even; NaN stays NaN."""
    return quantize_fp8(v, F32(1), None, None, fmt, False)[0]


def is_fp8(v: FloatArray, fmt: str) -> npt.NDArray[np.bool_]:
    """Which float32 values are finite float8 `fmt` values (those the rounding keeps: NaN and +-inf are not)."""
    v = np.asarray(v, F32)
    return np.asarray(fp8_round(v, fmt) == v)


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
