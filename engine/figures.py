"""What a quantization lost: SQNR, max and RMS error of a tensor against its exact reconstruction, in one pass.

The reconstruction is the dequantize definition, x^ = (q - zp) * scale in float32 (q - zp exact, one rounding),
with one scale and zero point per channel of an (outer, channels, inner) view: per tensor is one channel, the
float types pass their values with scale 1 and zero point 0. The difference d = x - x^ is taken in float32 (exact
for every value that was not clipped: x and x^ are within a factor 2 of each other or x^ is 0, Sterbenz), and
sum x^2, sum d^2 and max |d| accumulate in float64.

The fused kernel (numba) reads x and q once. It is compiled without fastmath, so d is bit for bit what numpy
computes; the sums run in 16 independent float64 lanes (which vectorise without reordering any one sum), added
up at the end. It releases the GIL, so a job runs it on a second thread beside the next tensor's quantize. Inputs
with NaN or infinities (which a configuration may let through) take the numpy path, which leaves them out.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt

F32 = np.float32
LANES: Final = 16  # independent accumulators, which the compiler turns into vector registers
NUMPY_BLOCK: Final = 64 * 1024  # elements per block of the numpy path

Figures = tuple[float | None, float | None, float | None]  # SQNR dB, max |x - x^|, RMS error


@numba.njit(cache=True, nogil=True, error_model="numpy")  # no fastmath: d rounds as numpy's float32 does
def _kernel(x: Any, q: Any, scale: Any, zp: Any, inner: int) -> Any:  # pragma: no cover - compiled
    """(sum x^2, sum d^2, max |d|) over flat x and q, channel c = (i // inner) % len(scale)."""
    n = x.size
    channels = scale.size
    signal = np.zeros(LANES, np.float64)
    noise = np.zeros(LANES, np.float64)
    worst = np.zeros(LANES, np.float32)
    if channels == 1 or inner >= LANES:
        run = n if channels == 1 else inner  # a run of elements shares one channel's parameters
        for a in range(0, n, run):
            c = 0 if channels == 1 else (a // inner) % channels
            s = scale[c]
            z = zp[c]
            b = min(a + run, n)
            m = a + (b - a) // LANES * LANES
            for i0 in range(a, m, LANES):
                for j in range(LANES):  # independent lanes: vectorised without reordering any sum
                    k = np.uint64(i0 + j)
                    xv = x[k]
                    dv = xv - (np.float32(q[k]) - z) * s
                    signal[j] += np.float64(xv) * np.float64(xv)
                    noise[j] += np.float64(dv) * np.float64(dv)
                    av = abs(dv)
                    worst[j] = av if av > worst[j] else worst[j]
            for t in range(m, b):
                xv = x[t]
                dv = xv - (np.float32(q[t]) - z) * s
                signal[0] += np.float64(xv) * np.float64(xv)
                noise[0] += np.float64(dv) * np.float64(dv)
                av = abs(dv)
                worst[0] = av if av > worst[0] else worst[0]
    else:  # channels along an inner axis with short runs: the channel of each element
        for t in range(n):
            c = (t // inner) % channels
            xv = x[t]
            dv = xv - (np.float32(q[t]) - zp[c]) * scale[c]
            signal[0] += np.float64(xv) * np.float64(xv)
            noise[0] += np.float64(dv) * np.float64(dv)
            av = abs(dv)
            worst[0] = av if av > worst[0] else worst[0]
    return signal.sum(), noise.sum(), worst.max()


def error_figures(x: npt.NDArray[np.float32], q: npt.NDArray[Any], scale: npt.NDArray[np.float32] | None,
                  zp: npt.NDArray[np.float32] | None, axis: int | None, *, finite: bool) -> Figures:
    """Figures of float32 `x` against the reconstruction of `q` (codes, or float values with `scale` None) with
    per-channel (along `axis`) or per-tensor parameters. `finite`: x is known to hold no NaN or infinity."""
    outer, channels, inner = _as_3d(x.shape, axis)
    s = np.ones(1, F32) if scale is None else np.ascontiguousarray(scale, F32).reshape(-1)
    z = np.zeros(s.size, F32) if zp is None else np.ascontiguousarray(zp, F32).reshape(-1)
    if s.size != (1 if axis is None else channels):
        raise ValueError(f"{s.size} scales for {channels} channels")
    if not finite and not bool(np.isfinite(x).all()):
        return _numpy_figures(x.reshape(outer, -1 if axis is None else channels, inner), q, s, z)
    flat_x = np.ascontiguousarray(x, F32).reshape(-1)
    flat_q = np.ascontiguousarray(q).reshape(-1)
    if flat_q.dtype == np.float16 or flat_q.dtype.kind == "V":
        flat_q = flat_q.astype(F32)  # float16 values (and ml_dtypes) as float32: exact
    signal, noise, worst = _kernel(flat_x, flat_q, s, z, inner if axis is not None else flat_x.size)
    return _result(float(signal), float(noise), float(worst), flat_x.size)


def warm() -> None:
    """Load (or compile, the first time on a machine: numba caches to disk) the kernel for every codes dtype a
    job passes it, so that a worker pays this once at start rather than in its first job."""
    x = np.zeros(LANES, F32)
    for dtype in (np.int8, np.uint8, np.int16, np.float32):
        error_figures(x, np.zeros(LANES, dtype), np.ones(1, F32), np.zeros(1, F32), None, finite=True)


def _as_3d(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    size = math.prod(shape)
    if axis is None:
        return 1, 1, size
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _result(signal: float, noise: float, worst: float, count: int) -> Figures:
    if count == 0:
        return None, None, None
    sqnr = None if noise == 0.0 or signal == 0.0 else 10.0 * math.log10(signal / noise)
    return sqnr, worst, math.sqrt(noise / count)


def _numpy_figures(x3: npt.NDArray[np.float32], q: npt.NDArray[Any], scale: npt.NDArray[np.float32],
                   zp: npt.NDArray[np.float32]) -> Figures:
    """The same figures over the finite values only, in numpy blocks (the rare path: NaN / Inf let through)."""
    q3 = q.reshape(x3.shape)
    s3, z3 = scale.reshape(1, -1, 1), zp.reshape(1, -1, 1)
    signal = noise = worst = 0.0
    count = 0
    step = max(1, NUMPY_BLOCK // max(1, x3.shape[1] * x3.shape[2]))
    for o in range(0, x3.shape[0], step):
        x32 = x3[o:o + step]
        xh = ((q3[o:o + step].astype(F32) - z3) * s3).astype(F32)
        xb, d = x32.astype(np.float64), np.subtract(x32, xh, dtype=F32).astype(np.float64)  # d as the kernel's
        keep = np.isfinite(xb)
        xb, d = xb[keep], d[keep]
        count += xb.size
        signal += float(np.sum(xb * xb))
        noise += float(np.sum(d * d))
        if d.size:
            worst = max(worst, float(np.max(np.abs(d))))
    return _result(signal, noise, worst, count)
