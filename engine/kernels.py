"""Cache-blocked numpy kernels for QuantizeLinear / DequantizeLinear semantics.

Work proceeds in blocks of `block_elements` float32 values (256 KiB by default) through one preallocated buffer
with in-place ufuncs, so large temporaries are never page-faulted in: at 16M elements this is several times
faster than the one-line expression, with identical results.

quantize:   q = clip(rint(x / scale) + zp, qmin, qmax)   (float32 division, round half to even)
dequantize: y = float32((q - zp) * scale)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from .qparams import QParams

F32 = np.float32
DEFAULT_BLOCK = 64 * 1024  # float32 elements: 256 KiB, comfortably inside L2


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

    def buffer(self) -> npt.NDArray[np.float32]:
        if self._buf is None:
            self._buf = np.empty(self.block, dtype=F32)
        return self._buf


def _params3(params: QParams) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Scale and zero point as (1, C, 1) float32 arrays (zero points are small integers, exact in float32)."""
    return params.scale.astype(F32).reshape(1, -1, 1), params.zero_point.astype(F32).reshape(1, -1, 1)


def quantize(
    x: npt.NDArray[np.float32],
    params: QParams,
    qmin: int,
    qmax: int,
    out_dtype: npt.DTypeLike,
    *,
    nan_to_zero_point: bool = False,
    workspace: Workspace | None = None,
    dequantize_after: bool = False,
) -> npt.NDArray[np.generic]:
    """Quantize float32 `x` to codes of `out_dtype` (or, with `dequantize_after`, fake-quantize to float32).

    `nan_to_zero_point` maps NaN to the zero point's code (only needed when NaNs are present; +-inf saturate by
    themselves).
    """
    ws = workspace or Workspace()
    x = np.ascontiguousarray(x, dtype=F32)
    shape3 = as_3d(x.shape, params.axis)
    x3 = x.reshape(shape3)
    out = np.empty(x.shape, dtype=F32 if dequantize_after else out_dtype)
    out3 = out.reshape(shape3)
    scale3, zp3 = _params3(params)
    per_tensor = params.axis is None
    s_scalar, z_scalar = (F32(scale3.ravel()[0]), F32(zp3.ravel()[0])) if per_tensor else (F32(0), F32(0))
    buf = ws.buffer()
    lo, hi = F32(qmin), F32(qmax)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for so, sc, si in _blocks(shape3, ws.block):
            src = x3[so, sc, si]
            b = buf[: src.size].reshape(src.shape)
            s, z = (s_scalar, z_scalar) if per_tensor else (scale3[:, sc], zp3[:, sc])
            np.divide(src, s, out=b)
            np.rint(b, out=b)
            np.add(b, z, out=b)
            np.clip(b, lo, hi, out=b)
            if nan_to_zero_point:
                np.copyto(b, np.broadcast_to(z, b.shape), where=np.isnan(b))
            if dequantize_after:
                np.subtract(b, z, out=b)
                np.multiply(b, s, out=out3[so, sc, si])
            else:
                out3[so, sc, si] = b
    return out


def dequantize(
    q: npt.NDArray[np.generic], params: QParams, *, workspace: Workspace | None = None
) -> npt.NDArray[np.float32]:
    """y = float32((q - zp) * scale): (q - zp) is an exact integer in float32, so one rounding, as ONNX Runtime."""
    ws = workspace or Workspace()
    q = np.ascontiguousarray(q)
    shape3 = as_3d(q.shape, params.axis)
    q3 = q.reshape(shape3)
    out = np.empty(q.shape, dtype=F32)
    out3 = out.reshape(shape3)
    scale3, zp3 = _params3(params)
    per_tensor = params.axis is None
    buf = ws.buffer()
    for so, sc, si in _blocks(shape3, ws.block):
        src = q3[so, sc, si]
        b = buf[: src.size].reshape(src.shape)
        s, z = (scale3.ravel()[0], zp3.ravel()[0]) if per_tensor else (scale3[:, sc], zp3[:, sc])
        b[...] = src
        np.subtract(b, z, out=b)
        np.multiply(b, s, out=out3[so, sc, si])
    return out


def count_outside(
    x: npt.NDArray[np.float32], params: QParams, qmin: int, qmax: int, *, workspace: Workspace | None = None
) -> int:
    """Elements whose rint(x / scale) + zp falls outside [qmin, qmax] (NaN counts: it has no code)."""
    ws = workspace or Workspace()
    x = np.ascontiguousarray(x, dtype=F32)
    shape3 = as_3d(x.shape, params.axis)
    x3 = x.reshape(shape3)
    scale3, zp3 = _params3(params)
    buf = ws.buffer()
    total = 0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for so, sc, si in _blocks(shape3, ws.block):
            src = x3[so, sc, si]
            b = buf[: src.size].reshape(src.shape)
            np.divide(src, scale3[:, sc], out=b)
            np.rint(b, out=b)
            np.add(b, zp3[:, sc], out=b)
            total += b.size - int(np.count_nonzero((b >= qmin) & (b <= qmax)))
    return total


def code_of(value: npt.NDArray[np.float32], params: QParams) -> npt.NDArray[np.float32]:
    """rint(value / scale) + zp for per-tensor or per-channel endpoint values (no clipping): used to decide
    from a range's ends alone whether any element can clip, since the map is monotone in x."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return np.rint(np.asarray(value, F32) / params.scale) + params.zero_point.astype(F32)
