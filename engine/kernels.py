"""Cache-blocked numpy kernels for QuantizeLinear / DequantizeLinear semantics.

Work proceeds in blocks of `block_elements` float32 values (256 KiB by default) through one preallocated buffer
with in-place ufuncs, so large temporaries are never page-faulted in and each block stays in L2 between
operations: at 16M elements this is several times faster than the one-line expression, with identical results.

quantize:   q = clip(rint(x / scale) + zp, qmin, qmax)   (float32 division, round half to even)
dequantize: y = float32((q - zp) * scale)

How the integer codes are produced (`_magic_plan`), bit-exactly and with four passes over each block instead of
five. With M = 1.5 * 2**23, the float32 sum y + M, for |y| < 2**22, is M + rint(y) exactly: the sum lies in
[2**23, 2**24) where float32 spacing is 1, so the hardware's round-to-nearest-even *is* rint. Its bit pattern,
read as int32, is then MB + rint(y) with MB = bits(M) = 0x4B400000, and the bit patterns of float32 values are
monotone in the value (negative values and -inf read as negative int32), so
    1. b = x / scale                 (float32 division, as the definition requires)
    2. b += M (+ zp when zp is even: an even offset cannot change which way a tie rounds)
    3. clip b's int32 view to [MB + qmin - zp', MB + qmax - zp']   (zp' the part of zp not added in step 2)
    4. out = int32 view (the low 8 / 16 bits are the code: MB's low 16 bits are zero; C casts truncate)
    5. only for odd zp: out += zp, in the code type (wrapping arithmetic, exact since the result is in range)
saturates huge values and +-inf exactly as the definition does. NaN has no code: callers that may pass NaN ask
for `nan_to_zero_point`. The truncating int32 casts are checked once at import (`_CASTS_TRUNCATE`); without
them, or for code types wider than 16 bits, the plain sequence divide, clip, rint, add, cast is used.
Fake quantization needs no codes: (q - zp) * scale = clip(rint(x / scale), qmin - zp, qmax - zp) * scale, as
rint commutes with clipping to integer bounds; with the same constant M: divide, add M, clip to
[M + qmin - zp, M + qmax - zp], subtract M, multiply (five passes instead of six; zero comes out as +0.0, as from
the unfused (q - zp), where np.rint would give -0.0 for small negative values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .qparams import QParams

F32 = np.float32
DEFAULT_BLOCK = 64 * 1024  # float32 elements: 256 KiB, comfortably inside L2
MINMAX_BLOCK_BYTES = 1024 * 1024  # bytes per block of the single-pass min/max (measured best of 64 KiB .. 4 MiB)

_M = F32(1.5 * 2**23)  # float32 "round to integer" constant: y + _M == _M + rint(y) for |y| < 2**22
_MB = 0x4B400000  # bits of _M as int32: its low 16 bits are zero
_MAGIC_LIMIT = 1 << 21  # |qmin - zp|, |qmax - zp| and |zp| must stay well inside 2**22


def _clip_ufunc() -> Callable[..., Any]:
    """The `clip` ufunc behind np.clip, which skips np.clip's Python wrapper (a few us per call) and, unlike
    np.minimum / np.maximum with a scalar operand, runs SIMD loops; np.clip where it is not found."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    ufunc = getattr(getattr(core, "umath", None), "clip", None)
    return ufunc if isinstance(ufunc, np.ufunc) else np.clip


_clip = _clip_ufunc()


def _casts_truncate() -> bool:
    """Do int32 -> int8 / uint8 / int16 casts keep the low bits (C semantics on every numpy platform)? Checked
    on an array long enough for the vectorised cast loops."""
    probe = np.arange(_MB - 70000, _MB + 70000, dtype=np.int32)
    low = np.arange(-70000, 70000, dtype=np.int64)
    return all(
        np.array_equal(probe.astype(dt), (low & mask).astype(udt).view(dt))
        for dt, udt, mask in ((np.int8, np.uint8, 0xFF), (np.uint8, np.uint8, 0xFF), (np.int16, np.uint16, 0xFFFF))
    )


_CASTS_TRUNCATE = _casts_truncate()


def as_3d(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    """(outer, channels, inner) view of `shape` around `axis` (per tensor: one channel)."""
    size = int(np.prod(shape, dtype=np.int64))
    if axis is None:
        return 1, 1, size
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    return outer, shape[axis], inner


def _blocks(shape3: tuple[int, int, int], block: int) -> Iterator[tuple[slice, slice, slice]]:
    """Slices of the (outer, channels, inner) view, each about `block` elements or fewer."""
    outer, channels, inner = shape3
    if inner >= block:
        for o in range(outer):
            for c in range(channels):
                for i0 in range(0, inner, block):
                    yield slice(o, o + 1), slice(c, c + 1), slice(i0, min(i0 + block, inner))
    elif channels * inner >= block:
        step = max(1, block // max(inner, 1))
        for o in range(outer):
            for c0 in range(0, channels, step):
                yield slice(o, o + 1), slice(c0, min(c0 + step, channels)), slice(0, inner)
    else:
        step = max(1, block // max(channels * inner, 1))
        for o0 in range(0, outer, step):
            yield slice(o0, min(o0 + step, outer)), slice(0, channels), slice(0, inner)


class Workspace:
    """A reusable float32 block buffer (`buffer_size` / `optimize_memory` keep one alive between calls)."""

    def __init__(self, block_elements: int = DEFAULT_BLOCK) -> None:
        self.block = max(1024, int(block_elements))
        self._buf: npt.NDArray[np.float32] | None = None
        self._mask: npt.NDArray[np.bool_] | None = None

    def buffer(self) -> npt.NDArray[np.float32]:
        if self._buf is None:
            self._buf = np.empty(self.block, dtype=F32)
        return self._buf

    def mask(self) -> npt.NDArray[np.bool_]:
        """A boolean block buffer (for counting clipped values)."""
        if self._mask is None:
            self._mask = np.empty(self.block, dtype=np.bool_)
        return self._mask


def _narrow_buffering(shape3: tuple[int, int, int]) -> None:
    """Per-channel blocks combine a (o, c, inner) block with (1, c, 1) parameters. When the ufunc buffer (8192
    elements by default) is longer than `inner`, numpy copies the operands through its buffers to make longer
    inner loops, which made those operations about twice as slow; a buffer no longer than `inner` lets it loop
    over the rows in place. Call inside an `np.errstate()` block, which restores the buffer size on exit."""
    inner = shape3[2]
    if 16 <= inner < np.getbufsize():
        np.setbufsize(inner - inner % 16)


def _outside(v: npt.NDArray[Any], lo: Any, hi: Any, mask: npt.NDArray[np.bool_], per_tensor: bool) -> int:
    """Elements of the block `v` outside [lo, hi] (NaN counts). Two reductions first: most blocks clip nothing."""
    if per_tensor:
        if np.minimum.reduce(v, axis=None) >= lo and np.maximum.reduce(v, axis=None) <= hi:
            return 0
    # Per channel: each channel's extremes against its bounds, through ufuncs only (no Python-level wrappers).
    # The differences cannot overflow: int32 values are float32 bit patterns near MB, bounds too.
    elif (np.minimum.reduce(np.minimum.reduce(v, axis=(0, 2), keepdims=True) - lo, axis=None) >= 0
          and np.minimum.reduce(hi - np.maximum.reduce(v, axis=(0, 2), keepdims=True), axis=None) >= 0):
        return 0
    return v.size - int(np.count_nonzero(np.logical_and(v >= lo, v <= hi, out=mask)))


def _params3(params: QParams) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Scale and zero point as (1, C, 1) float32 arrays (zero points are small integers, exact in float32)."""
    return params.scale.astype(F32).reshape(1, -1, 1), params.zero_point.astype(F32).reshape(1, -1, 1)


class _Plan:
    """Per-channel (1, C, 1) constants of one quantize call; per tensor, C == 1."""

    def __init__(self, params: QParams, qmin: int, qmax: int, out_dtype: np.dtype[Any], dequantize_after: bool):
        zp = params.zero_point.astype(np.int64).reshape(1, -1, 1)
        self.scale = params.scale.astype(F32).reshape(1, -1, 1)
        self.zp_f = zp.astype(F32)
        # Clip bounds of rint(x / scale) before the zero point is added (integers, exact in float32).
        self.lo_f = (qmin - zp).astype(F32)
        self.hi_f = (qmax - zp).astype(F32)
        self.fq_lo = (F32(_M) + self.lo_f).astype(F32)  # the same bounds offset by M (exact: |bound| < 2**21)
        self.fq_hi = (F32(_M) + self.hi_f).astype(F32)
        self.magic = (
            not dequantize_after
            and _CASTS_TRUNCATE
            and out_dtype in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
            and qmax - qmin < _MAGIC_LIMIT
            and bool(np.all(np.abs(zp) < _MAGIC_LIMIT))
        )
        if self.magic:
            even = (zp % 2) == 0
            folded = np.where(even, zp, 0)  # the part of zp added before rounding
            rest = zp - folded  # the part added to the codes afterwards (odd zero points)
            self.add_f = (F32(_M) + folded.astype(F32)).astype(F32)  # exact: integers below 2**24
            self.lo_i = (_MB + qmin - rest).astype(np.int32)
            self.hi_i = (_MB + qmax - rest).astype(np.int32)
            self.rest = rest.astype(out_dtype) if np.any(rest) else None
        self.zp_code = zp.astype(out_dtype) if not dequantize_after else None
        self.per_tensor = self.scale.size == 1
        if self.per_tensor:  # scalars: the cheapest ufunc operands
            for name in ("scale", "zp_f", "lo_f", "hi_f", "fq_lo", "fq_hi", "add_f", "lo_i", "hi_i", "rest", "zp_code"):
                value = getattr(self, name, None)
                if value is not None:
                    setattr(self, name, value.reshape(-1)[0])

    def at(self, name: str, sc: slice) -> Any:
        value = getattr(self, name)
        return value if self.per_tensor or value is None else value[:, sc]


def _quantize_block(
    src: npt.NDArray[np.float32],
    dst: npt.NDArray[Any],
    b: npt.NDArray[np.float32],
    plan: _Plan,
    sc: slice,
    dequantize_after: bool,
    nan_to_zero_point: bool | None,
    mask: npt.NDArray[np.bool_] | None,
) -> int:
    """Quantize one block `src` into `dst` through the buffer `b`; return the clipped count when `mask` (a
    boolean buffer) is given, else 0. `nan_to_zero_point` None: find out whether this block holds NaN."""
    clipped = 0
    np.divide(src, plan.at("scale", sc), out=b)
    if nan_to_zero_point is None:  # x / scale is NaN exactly where x is (scale is finite and positive)
        nan_to_zero_point = bool(np.isnan(np.minimum.reduce(b, axis=None)))
    if dequantize_after:
        # b + M == M + rint(b) (the sum is monotone where it is not exact, so clipping it saturates correctly);
        # subtracting M after the clip leaves q - zp exactly, zero as +0.0 like the unfused (q - zp).
        np.add(b, _M, out=b)
        lo, hi = plan.at("fq_lo", sc), plan.at("fq_hi", sc)
        if mask is not None:
            clipped = _outside(b, lo, hi, mask, plan.per_tensor)
        _clip(b, lo, hi, out=b)
        np.subtract(b, _M, out=b)
        np.multiply(b, plan.at("scale", sc), out=dst)
        if nan_to_zero_point:
            np.copyto(dst, F32(0), where=np.isnan(src))  # (zp - zp) * scale
        return clipped
    if plan.magic:
        np.add(b, plan.at("add_f", sc), out=b)
        bits = b.view(np.int32)
        lo_i, hi_i = plan.at("lo_i", sc), plan.at("hi_i", sc)
        if mask is not None:  # NaN reads as a huge (or, with its sign bit, negative) integer: it counts
            clipped = _outside(bits, lo_i, hi_i, mask, plan.per_tensor)
        _clip(bits, lo_i, hi_i, out=bits)
        dst[...] = bits
        rest = plan.at("rest", sc)
        if rest is not None:
            np.add(dst, rest, out=dst)
    else:
        lo, hi = plan.at("lo_f", sc), plan.at("hi_f", sc)
        np.rint(b, out=b)
        if mask is not None:
            clipped = _outside(b, lo, hi, mask, plan.per_tensor)
        _clip(b, lo, hi, out=b)
        np.add(b, plan.at("zp_f", sc), out=b)
        dst[...] = b
    if nan_to_zero_point:
        np.copyto(dst, np.broadcast_to(plan.at("zp_code", sc), dst.shape), where=np.isnan(src))
    return clipped


def quantize_counted(
    x: npt.NDArray[np.float32],
    params: QParams,
    qmin: int,
    qmax: int,
    out_dtype: npt.DTypeLike,
    *,
    nan_to_zero_point: bool | None = False,
    workspace: Workspace | None = None,
    dequantize_after: bool = False,
    count_clipped: bool = False,
) -> tuple[npt.NDArray[Any], int]:
    """`quantize`, and with `count_clipped` the number of elements whose rint(x / scale) + zp falls outside
    [qmin, qmax] (NaN counts: it has no code), counted in the same pass (0 without `count_clipped`)."""
    ws = workspace or Workspace()
    x = np.ascontiguousarray(x, dtype=F32)
    dtype = np.dtype(F32 if dequantize_after else out_dtype)
    out = np.empty(x.shape, dtype=dtype)
    plan = _Plan(params, qmin, qmax, dtype, dequantize_after)
    buf = ws.buffer()
    mask = ws.mask() if count_clipped else None
    block = ws.block
    clipped = 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if params.axis is None:
            xf, of = x.reshape(-1), out.reshape(-1)
            n = xf.size
            everything = slice(None)
            for i0 in range(0, n, block):
                i1 = min(i0 + block, n)
                m = None if mask is None else mask[: i1 - i0]
                clipped += _quantize_block(xf[i0:i1], of[i0:i1], buf[: i1 - i0], plan, everything,
                                           dequantize_after, nan_to_zero_point, m)
        else:
            shape3 = as_3d(x.shape, params.axis)
            x3, out3 = x.reshape(shape3), out.reshape(shape3)
            _narrow_buffering(shape3)
            for so, sc, si in _blocks(shape3, block):
                src = x3[so, sc, si]
                b = buf[: src.size].reshape(src.shape)
                m = None if mask is None else mask[: src.size].reshape(src.shape)
                clipped += _quantize_block(src, out3[so, sc, si], b, plan, sc, dequantize_after,
                                           nan_to_zero_point, m)
    return out, clipped


def quantize(
    x: npt.NDArray[np.float32],
    params: QParams,
    qmin: int,
    qmax: int,
    out_dtype: npt.DTypeLike,
    *,
    nan_to_zero_point: bool | None = False,
    workspace: Workspace | None = None,
    dequantize_after: bool = False,
) -> npt.NDArray[Any]:
    """Quantize float32 `x` to codes of `out_dtype` (or, with `dequantize_after`, fake-quantize to float32).

    `nan_to_zero_point` maps NaN to the zero point's code (fake quantization: to 0.0): True when NaNs are known
    to be present, False when they are known to be absent (their codes are then unspecified), None when nothing
    is known: each block is then checked by one reduction while it is in cache, far cheaper than a separate
    pass over the data. +-inf saturate by themselves.
    """
    return quantize_counted(x, params, qmin, qmax, out_dtype, nan_to_zero_point=nan_to_zero_point,
                            workspace=workspace, dequantize_after=dequantize_after)[0]


def dequantize(
    q: npt.NDArray[np.generic], params: QParams, *, workspace: Workspace | None = None
) -> npt.NDArray[np.float32]:
    """y = float32((q - zp) * scale): (q - zp) is an exact integer in float32, so one rounding, as ONNX Runtime."""
    ws = workspace or Workspace()
    q = np.ascontiguousarray(q)
    out = np.empty(q.shape, dtype=F32)
    scale3, zp3 = _params3(params)
    with_zp = bool(np.any(zp3))
    buf = ws.buffer()
    block = ws.block
    if params.axis is None:
        qf, of = q.reshape(-1), out.reshape(-1)
        s, z = F32(scale3.reshape(-1)[0]), F32(zp3.reshape(-1)[0])
        n = qf.size
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            b = buf[: i1 - i0]
            b[...] = qf[i0:i1]
            if with_zp:
                np.subtract(b, z, out=b)
            np.multiply(b, s, out=of[i0:i1])
        return out
    shape3 = as_3d(q.shape, params.axis)
    q3, out3 = q.reshape(shape3), out.reshape(shape3)
    with np.errstate():
        _narrow_buffering(shape3)
        for so, sc, si in _blocks(shape3, block):
            src = q3[so, sc, si]
            b = buf[: src.size].reshape(src.shape)
            b[...] = src
            if with_zp:
                np.subtract(b, zp3[:, sc], out=b)
            np.multiply(b, scale3[:, sc], out=out3[so, sc, si])
    return out


def minmax(x: npt.NDArray[Any], axis: int | None = None, *, block: int | None = None) -> tuple[Any, Any]:
    """(min, max) of `x` in one pass over memory, as np.min / np.max would give them (NaN propagates): scalars
    of x's dtype, or with `axis` one value per index along it (every other axis reduced).

    Each block (`block` elements, 1 MiB by default) is read from memory once and reduced twice while it is in
    cache, instead of two full passes."""
    if block is None:
        block = max(1024, MINMAX_BLOCK_BYTES // max(1, x.dtype.itemsize))
    if x.size == 0 or not x.flags.c_contiguous:
        axes = None if axis is None else tuple(i for i in range(x.ndim) if i != axis)
        return np.min(x, axis=axes), np.max(x, axis=axes)
    if axis is None:
        flat = x.reshape(-1)
        n = flat.size
        if n <= block:
            return np.minimum.reduce(flat), np.maximum.reduce(flat)
        count = (n + block - 1) // block
        los = np.empty(count, dtype=x.dtype)
        his = np.empty(count, dtype=x.dtype)
        for k, i0 in enumerate(range(0, n, block)):
            part = flat[i0 : i0 + block]
            los[k] = np.minimum.reduce(part)
            his[k] = np.maximum.reduce(part)
        return np.minimum.reduce(los), np.maximum.reduce(his)
    shape3 = as_3d(x.shape, axis)
    x3 = x.reshape(shape3)
    lo = np.empty(shape3[1], dtype=x.dtype)
    hi = np.empty(shape3[1], dtype=x.dtype)
    outer, channels, inner = shape3
    if outer == 1 and inner < block:  # whole channels (rows) per block: reduce them straight into the result
        rows = x3[0]
        step = max(1, block // inner)
        for c0 in range(0, channels, step):
            part = rows[c0 : c0 + step]
            np.minimum.reduce(part, axis=1, out=lo[c0 : c0 + step])
            np.maximum.reduce(part, axis=1, out=hi[c0 : c0 + step])
        return lo, hi
    first = np.ones(shape3[1], dtype=np.bool_)
    for so, sc, si in _blocks(shape3, block):
        part = x3[so, sc, si]
        blo = np.minimum.reduce(part, axis=(0, 2))
        bhi = np.maximum.reduce(part, axis=(0, 2))
        if first[sc].all():
            lo[sc], hi[sc] = blo, bhi
            first[sc] = False
        else:
            np.minimum(lo[sc], blo, out=lo[sc])
            np.maximum(hi[sc], bhi, out=hi[sc])
    return lo, hi


def count_outside(
    x: npt.NDArray[np.float32], params: QParams, qmin: int, qmax: int, *, workspace: Workspace | None = None
) -> int:
    """Elements whose rint(x / scale) + zp falls outside [qmin, qmax] (NaN counts: it has no code)."""
    ws = workspace or Workspace()
    x = np.ascontiguousarray(x, dtype=F32)
    shape3 = as_3d(x.shape, params.axis)
    x3 = x.reshape(shape3)
    scale3, zp3 = _params3(params)
    lo3, hi3 = F32(qmin) - zp3, F32(qmax) - zp3  # rint(x / scale) must lie in [qmin - zp, qmax - zp]
    buf, mask = ws.buffer(), ws.mask()
    total = 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        _narrow_buffering(shape3)
        for so, sc, si in _blocks(shape3, ws.block):
            src = x3[so, sc, si]
            b = buf[: src.size].reshape(src.shape)
            m = mask[: src.size].reshape(src.shape)
            np.divide(src, scale3[:, sc], out=b)
            np.rint(b, out=b)
            total += b.size - int(np.count_nonzero(np.logical_and(b >= lo3[:, sc], b <= hi3[:, sc], out=m)))
    return total


def code_of(value: npt.NDArray[np.float32], params: QParams) -> npt.NDArray[np.float32]:
    """rint(value / scale) + zp for per-tensor or per-channel endpoint values (no clipping): used to decide
    from a range's ends alone whether any element can clip, since the map is monotone in x."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        codes: npt.NDArray[np.float32] = np.rint(np.asarray(value, F32) / params.scale) + params.zero_point.astype(F32)
    return codes
