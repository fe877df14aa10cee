"""Cache-blocked numpy kernels for QuantizeLinear / DequantizeLinear semantics.

Work proceeds in blocks of `block_elements` float32 values (512 KiB by default) through one preallocated buffer
with in-place ufuncs, so large temporaries are never page-faulted in and each block stays in cache between
operations: at 16M elements this is several times faster than the one-line expression, with identical results.

quantize:   q = clip(rint(x / scale) + zp, qmin, qmax)   (float32 division, round half to even)
dequantize: y = float32((q - zp) * scale)

How the integer codes are produced, bit-exactly, with four passes over each block instead of five. With
M = 1.5 * 2**23, the float32 sum y + M, for |y| < 2**22, is M + rint(y) exactly: the sum lies in [2**23, 2**24)
where float32 spacing is 1, so the hardware's round-to-nearest-even *is* rint. Its bit pattern, read as int32, is
then MB + rint(y) with MB = bits(M) = 0x4B400000, and the bit patterns of float32 values are monotone in the value
(negative values and -inf read as negative int32), so
    1. b = x / scale                 (float32 division, as the definition requires)
    2. b += M (+ zp for an even per-tensor zp: an even offset cannot change which way a tie rounds)
    3. clip b's int32 view to [MB + qmin - zp', MB + qmax - zp']   (zp' the part of zp not added in step 2)
    4. out = int32 view (the low 8 / 16 bits are the code: MB's low 16 bits are zero; C casts truncate)
    5. if zp' != 0: out += zp', in the code type (wrapping arithmetic, exact since the result is in range)
saturates huge values and +-inf exactly as the definition does. NaN has no code: `nan_to_zero_point` maps it to
the zero point's. The truncating int32 casts are checked once at import (`_CASTS_TRUNCATE`); without them, or for
code types wider than 16 bits, the plain sequence divide, rint, clip, add, cast is used (`_Consts.magic`).
Fake quantization needs no codes: (q - zp) * scale = clip(rint(x / scale), qmin - zp, qmax - zp) * scale, as
rint commutes with clipping to integer bounds; with the same constant M: divide, add M, clip to
[M + qmin - zp, M + qmax - zp], subtract M, multiply (five passes instead of six; zero comes out as +0.0, as from
the unfused (q - zp), where np.rint would give -0.0 for small negative values).

Other measured choices: the `clip` ufunc itself (np.clip's Python wrapper costs microseconds per call, and
np.minimum / np.maximum with a scalar run a non-SIMD loop, 2-3x slower); numpy scalars, never Python floats or
np.float64, as operands; per-channel blocks with a ufunc buffer no longer than a channel row
(`_narrow_buffering`); min and max in one pass over memory (`minmax`).

Small arrays (at most SMALL_ELEMENTS values) skip the block machinery: the whole array is one block, quantized by
the same `_quantize_block` with the same constants through temporaries of its size, so every rule above (rounding,
saturation, NaN, the clipped count) holds unchanged; only the per-call set-up, tens of microseconds, is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .qparams import QParams

F32 = np.float32
_TILE_MIN_WIDTH = 8192  # elements: per-channel rows at least this long (the ufunc buffer's default length)
_TILE_MAX_PERIOD = 16384  # elements: channel periods up to this are tiled (constants of at most 64 KiB each)
DEFAULT_BLOCK = 128 * 1024  # float32 elements: 512 KiB, half the L2 (measured: 5-15 % faster than 256 KiB)
SMALL_ELEMENTS = 4096  # arrays up to this many values are quantized as one block, without Workspace or generator
MINMAX_BLOCK_BYTES = 1024 * 1024  # bytes per block of the single-pass min/max (measured best of 64 KiB .. 4 MiB)

_M = F32(1.5 * 2**23)  # float32 "round to integer" constant: y + _M == _M + rint(y) for |y| < 2**22
_M_FLOAT = float(_M)
_MB = 0x4B400000  # bits of _M as int32: its low 16 bits are zero
_MAGIC_LIMIT = 1 << 21  # |qmin - zp|, |qmax - zp| and |zp| must stay well inside 2**22


def _clip_ufunc() -> Callable[..., Any]:
    """The `clip` ufunc behind np.clip, which skips np.clip's Python wrapper (a few us per call) and, unlike
    np.minimum / np.maximum with a scalar operand, runs SIMD loops; np.clip where it is not found."""
    ufunc = getattr(getattr(getattr(np, "_core", None), "umath", None), "clip", None)
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
_MAGIC_DTYPES = frozenset({np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16)})


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


def _outside(
    v: npt.NDArray[Any], lo: Any, hi: Any, mask: npt.NDArray[np.bool_], axes: tuple[int, ...] | None
) -> int:
    """Elements of the block `v` outside [lo, hi] (NaN counts). Two reductions first: most blocks clip nothing.
    `axes`: None when the bounds are scalars, else the axes of `v` along which they are constant."""
    if axes is None:
        if np.minimum.reduce(v, axis=None) >= lo and np.maximum.reduce(v, axis=None) <= hi:
            return 0
    # Per channel: each channel's extremes against its bounds, through ufuncs only (no Python-level wrappers);
    # the differences in float64, exact for int32 and float32 values alike (and NaN stays NaN: not >= 0).
    elif (np.minimum.reduce(np.subtract(np.minimum.reduce(v, axis=axes, keepdims=True), lo, dtype=np.float64),
                            axis=None) >= 0
          and np.minimum.reduce(np.subtract(hi, np.maximum.reduce(v, axis=axes, keepdims=True), dtype=np.float64),
                                axis=None) >= 0):
        return 0
    return v.size - int(np.count_nonzero(np.logical_and(v >= lo, v <= hi, out=mask)))


def _params3(params: QParams) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Scale and zero point as (1, C, 1) float32 arrays (zero points are small integers, exact in float32)."""
    return params.scale.astype(F32).reshape(1, -1, 1), params.zero_point.astype(F32).reshape(1, -1, 1)


class _Consts:
    """The constants of one quantize call: scalars per tensor (the cheapest ufunc operands), (1, C, 1) arrays per
    channel, of which `channels` takes a block's slice."""

    __slots__ = ("add_f", "fq_hi", "fq_lo", "hi_f", "hi_i", "lo_f", "lo_i", "magic", "per_tensor", "rest", "scale",
                 "zp_code", "zp_f")
    # numpy scalars (per tensor) or (1, C, 1) arrays (per channel); `rest` None when there is nothing to add
    add_f: Any
    fq_hi: Any
    fq_lo: Any
    hi_f: Any
    hi_i: Any
    lo_f: Any
    lo_i: Any
    rest: Any
    scale: Any
    zp_code: Any
    zp_f: Any
    magic: bool
    per_tensor: bool

    def __init__(self, params: QParams, qmin: int, qmax: int, out_dtype: np.dtype[Any], dequantize_after: bool):
        self.per_tensor = params.zero_point.size == 1
        # Per tensor the zero point is read as a Python int (no (1, C, 1) array: a few us less per call).
        zp = None if self.per_tensor else params.zero_point.reshape(1, -1, 1).astype(np.int64, copy=False)
        z_max = abs(int(params.zero_point.item())) if zp is None else int(np.abs(zp).max())
        self.magic = (
            not dequantize_after
            and _CASTS_TRUNCATE
            and out_dtype in _MAGIC_DTYPES
            and qmax - qmin < _MAGIC_LIMIT
            and z_max < _MAGIC_LIMIT
        )
        codes = not dequantize_after
        if zp is None:
            z = int(params.zero_point.item())
            self.scale = F32(params.scale.item())
            self.zp_f = F32(z)
            # Clip bounds of rint(x / scale) before the zero point is added (integers, exact in float32), and
            # the same offset by M for fake quantization (exact: |bound| < 2**21; summed as Python floats, exact
            # too, which is cheaper than numpy scalar arithmetic).
            self.lo_f, self.hi_f = F32(qmin - z), F32(qmax - z)
            self.fq_lo, self.fq_hi = F32(_M_FLOAT + (qmin - z)), F32(_M_FLOAT + (qmax - z))
            self.zp_code = out_dtype.type(z) if codes else None
            folded = z if z % 2 == 0 else 0  # an even zero point is added with M: one pass fewer
            rest = z - folded  # the part of zp added to the codes at the end (1-byte data: cheap)
            self.add_f = F32(_M_FLOAT + folded)  # exact: an integer below 2**24
            self.lo_i, self.hi_i = np.int32(_MB + qmin - rest), np.int32(_MB + qmax - rest)
            self.rest = out_dtype.type(rest) if self.magic and rest else None
        else:
            assert zp is not None
            # Per channel, M alone keeps its add a scalar one (the fast loop); zero points go to the codes.
            self.scale = params.scale.astype(F32).reshape(1, -1, 1)
            self.zp_f = zp.astype(F32)
            self.lo_f, self.hi_f = (qmin - zp).astype(F32), (qmax - zp).astype(F32)
            self.fq_lo, self.fq_hi = (_M + (qmin - zp)).astype(F32), (_M + (qmax - zp)).astype(F32)
            self.zp_code = zp.astype(out_dtype) if codes else None
            self.add_f = F32(_M)
            self.lo_i, self.hi_i = (_MB + qmin - zp).astype(np.int32), (_MB + qmax - zp).astype(np.int32)
            self.rest = zp.astype(out_dtype) if self.magic and np.any(zp) else None

    def _map(self, fn: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]) -> _Consts:
        """A copy with `fn` applied to every per-channel array (per tensor: self)."""
        if self.per_tensor:
            return self
        part = object.__new__(_Consts)
        for name in _Consts.__slots__:
            value = getattr(self, name)
            setattr(part, name, fn(value) if isinstance(value, np.ndarray) else value)
        return part

    def channels(self, sc: slice) -> _Consts:
        """The (1, c, 1) constants of the channels `sc`."""
        return self._map(lambda v: v[:, sc])

    def tiled(self, width: int, inner: int) -> _Consts:
        """1-D constants for `width` consecutive elements starting at a channel period (C * inner elements)."""
        period = self.scale.size * inner
        channel = (np.arange(width) % period) // inner
        return self._map(lambda v: v.reshape(-1)[channel])

    def head(self, n: int) -> _Consts:
        """The first `n` of 1-D (tiled) constants."""
        return self._map(lambda v: v[:n])


def _quantize_block(
    src: npt.NDArray[np.float32],
    dst: npt.NDArray[Any],
    b: npt.NDArray[np.float32],
    c: _Consts,
    axes: tuple[int, ...] | None,
    dequantize_after: bool,
    nan_to_zero_point: bool | None,
    mask: npt.NDArray[np.bool_] | None,
) -> int:
    """Quantize one block `src` into `dst` through the buffer `b`; return the clipped count when `mask` (a
    boolean buffer) is given, else 0. `nan_to_zero_point` None: find out whether this block holds NaN."""
    clipped = 0
    np.divide(src, c.scale, out=b)
    if nan_to_zero_point is None:  # x / scale is NaN exactly where x is (scale is finite and positive)
        nan_to_zero_point = bool(np.isnan(np.minimum.reduce(b, axis=None)))
    if dequantize_after:
        # b + M == M + rint(b) (the sum is monotone where it is not exact, so clipping it saturates correctly);
        # subtracting M after the clip leaves q - zp exactly, zero as +0.0 like the unfused (q - zp).
        np.add(b, _M, out=b)
        if mask is not None:
            clipped = _outside(b, c.fq_lo, c.fq_hi, mask, axes)
        _clip(b, c.fq_lo, c.fq_hi, out=b)
        np.subtract(b, _M, out=b)
        np.multiply(b, c.scale, out=dst)
        if nan_to_zero_point:
            np.copyto(dst, F32(0), where=np.isnan(src))  # (zp - zp) * scale
        return clipped
    if c.magic:
        np.add(b, c.add_f, out=b)
        bits = b.view(np.int32)
        if mask is not None:  # NaN reads as a huge (or, with its sign bit, negative) integer: it counts
            clipped = _outside(bits, c.lo_i, c.hi_i, mask, axes)
        _clip(bits, c.lo_i, c.hi_i, out=bits)
        dst[...] = bits
        if c.rest is not None:
            np.add(dst, c.rest, out=dst)
    else:
        np.rint(b, out=b)
        if mask is not None:
            clipped = _outside(b, c.lo_f, c.hi_f, mask, axes)
        _clip(b, c.lo_f, c.hi_f, out=b)
        np.add(b, c.zp_f, out=b)
        dst[...] = b
    if nan_to_zero_point:
        np.copyto(dst, c.zp_code, where=np.isnan(src))
    return clipped


_Block = tuple[
    npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.float32], npt.NDArray[np.bool_], _Consts, tuple[int, ...] | None
]


def _quantize_blocks(
    x: npt.NDArray[Any], out: npt.NDArray[Any], params: QParams, consts: _Consts, ws: Workspace
) -> Iterator[_Block]:
    """(source, destination, float buffer, boolean buffer, constants, axes) for each block; `axes` are those
    along which the block's constants are constant (None: scalars). Iterate inside an `np.errstate()` block.

    Per tensor: flat slices. Per channel with a short channel period (C * inner elements, e.g. channels last):
    flat slices seen as rows of `width` elements, a multiple of the period, with the constants tiled to one row,
    so that every ufunc runs long contiguous inner loops instead of loops over a few channels. Otherwise:
    blocks of the (outer, channels, inner) view with (1, c, 1) constants."""
    buf, mask, block = ws.buffer(), ws.mask(), ws.block
    xf, of = x.reshape(-1), out.reshape(-1)
    n = xf.size
    if params.axis is None:
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            yield xf[i0:i1], of[i0:i1], buf[: i1 - i0], mask[: i1 - i0], consts, None
        return
    shape3 = as_3d(x.shape, params.axis)
    outer, channels, inner = shape3
    period = channels * inner
    if outer > 1 and period <= _TILE_MAX_PERIOD and period * 2 <= block:
        width = period * max(1, min(block // period, -(-_TILE_MIN_WIDTH // period)))
        step = width * (block // width)
        tiled = consts.tiled(width, inner)
        _narrow_buffering((1, 1, width))
        for i0 in range(0, n, step):
            rows, tail = divmod(min(step, n - i0), width)
            if rows:
                i1 = i0 + rows * width
                yield (xf[i0:i1].reshape(rows, width), of[i0:i1].reshape(rows, width),
                       buf[: i1 - i0].reshape(rows, width), mask[: i1 - i0].reshape(rows, width), tiled, (0,))
                i0 = i1
            if tail:
                yield (xf[i0 : i0 + tail].reshape(1, tail), of[i0 : i0 + tail].reshape(1, tail),
                       buf[:tail].reshape(1, tail), mask[:tail].reshape(1, tail), tiled.head(tail), (0,))
        return
    x3, out3 = x.reshape(shape3), out.reshape(shape3)
    _narrow_buffering(shape3)
    for so, sc, si in _blocks(shape3, block):
        src = x3[so, sc, si]
        shape = src.shape
        yield (src, out3[so, sc, si], buf[: src.size].reshape(shape), mask[: src.size].reshape(shape),
               consts.channels(sc), (0, 2))


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
    out: npt.NDArray[Any] | None = None,
) -> tuple[npt.NDArray[Any], int]:
    """`quantize`, and with `count_clipped` the number of elements whose rint(x / scale) + zp falls outside
    [qmin, qmax] (NaN counts: it has no code), counted in the same pass (0 without `count_clipped`).

    `out` may be `x` itself for fake quantization: each block is read into the work buffer before its result is
    written, so the answer overwrites the input in place and no second full-size array is allocated."""
    x = np.ascontiguousarray(x, dtype=F32)
    dtype = np.dtype(F32 if dequantize_after else out_dtype)
    if out is None:
        out = np.empty(x.shape, dtype=dtype)
    elif out.shape != x.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous array of the input's shape and the result's dtype")
    consts = _Consts(params, qmin, qmax, dtype, dequantize_after)
    if x.size <= SMALL_ELEMENTS:
        return out, _quantize_small(x, out, params, consts, dequantize_after, nan_to_zero_point, count_clipped)
    ws = workspace or Workspace()
    clipped = 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for src, dst, b, m, c, axes in _quantize_blocks(x, out, params, consts, ws):
            clipped += _quantize_block(src, dst, b, c, axes, dequantize_after, nan_to_zero_point,
                                       m if count_clipped else None)
    return out, clipped


def _quantize_small(
    x: npt.NDArray[np.float32],
    out: npt.NDArray[Any],
    params: QParams,
    consts: _Consts,
    dequantize_after: bool,
    nan_to_zero_point: bool | None,
    count_clipped: bool,
) -> int:
    """The whole of a small array as one block: per tensor flat, per channel its (outer, channels, inner) view
    with (1, C, 1) constants (the blocks' own layout, whole), through temporaries of its size instead of the
    workspace. Same block function, same constants: the same bits and the same clipped count."""
    if params.axis is None:
        src, dst, axes = x.reshape(-1), out.reshape(-1), None
    else:
        shape3 = as_3d(x.shape, params.axis)
        src, dst, axes = x.reshape(shape3), out.reshape(shape3), (0, 2)
    buf = np.empty(src.shape, dtype=F32)
    mask = np.empty(src.shape, dtype=np.bool_) if count_clipped else None
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _quantize_block(src, dst, buf, consts, axes, dequantize_after, nan_to_zero_point, mask)


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
    consts = _Consts(params, 0, 0, np.dtype(F32), True)
    with np.errstate():
        for src, dst, b, _, c, _ in _quantize_blocks(q, out, params, consts, ws):
            b[...] = src
            if with_zp:
                np.subtract(b, c.zp_f, out=b)
            np.multiply(b, c.scale, out=dst)
    return out


def minmax(x: npt.NDArray[Any], axis: int | None = None, *, block: int | None = None) -> tuple[Any, Any]:
    """(min, max) of `x` in one pass over memory, as np.min / np.max would give them (NaN propagates): scalars
    of x's dtype, or with `axis` one value per index along it (every other axis reduced).

    Each block (`block` elements, 1 MiB by default) is read from memory once and reduced twice while it is in
    cache, instead of two full passes."""
    if block is None:
        block = max(1024, MINMAX_BLOCK_BYTES // max(1, x.dtype.itemsize))
    if axis is None and 0 < x.size <= SMALL_ELEMENTS:
        return np.minimum.reduce(x, axis=None), np.maximum.reduce(x, axis=None)
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
    period = channels * inner
    if period <= _TILE_MAX_PERIOD and period * 2 <= block:
        return _minmax_periodic(x.reshape(-1), channels, inner, block)
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


def _minmax_periodic(flat: npt.NDArray[Any], channels: int, inner: int, block: int) -> tuple[Any, Any]:
    """Per-channel min / max when the channel pattern repeats every `channels * inner` elements (many short
    periods, e.g. channels last): element-wise min / max of rows a multiple of the period wide, with long
    contiguous inner loops, then folded to one value per channel (reducing a (N, C) array along axis 0 directly
    runs inner loops of C elements)."""
    period = channels * inner
    width = period * max(1, min(block // period, -(-_TILE_MIN_WIDTH // period)))
    step = width * max(1, block // width)
    full = flat.size - flat.size % width
    parts: list[npt.NDArray[Any]] = []
    for i0 in range(0, full, step):
        rows = flat[i0 : min(i0 + step, full)].reshape(-1, width)
        parts.append(np.stack((np.minimum.reduce(rows, axis=0), np.maximum.reduce(rows, axis=0))))
    if full < flat.size:  # the rest: whole periods
        rows = flat[full:].reshape(-1, period)
        rest = np.stack((np.minimum.reduce(rows, axis=0), np.maximum.reduce(rows, axis=0)))
        parts.append(np.concatenate([rest] * (width // period), axis=1))
    both = np.stack(parts) if len(parts) > 1 else parts[0][None]
    lo = np.minimum.reduce(both[:, 0].reshape(-1, width // period, channels, inner), axis=(0, 1, 3))
    hi = np.maximum.reduce(both[:, 1].reshape(-1, width // period, channels, inner), axis=(0, 1, 3))
    return lo, hi


def code_of(value: npt.NDArray[np.float32], params: QParams) -> npt.NDArray[np.float32]:
    """rint(value / scale) + zp for per-tensor or per-channel endpoint values (no clipping): used to decide
    from a range's ends alone whether any element can clip, since the map is monotone in x."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        codes: npt.NDArray[np.float32] = np.rint(np.asarray(value, F32) / params.scale) + params.zero_point.astype(F32)
    return codes
