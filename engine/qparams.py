"""Quantization parameters: integer ranges, and scale / zero point from a real range, bit-exact with ONNX Runtime.

Precision (see docs/numerics.md): the range values are float32; the scale is computed in float64 and
rounded to float32 once; the zero point is `rint(float32(qmin) - float32(rmin) / scale)` in float32 arithmetic.
This reproduces `onnxruntime.quantization.quant_utils.compute_scale_zp` to the bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import QuantizationType

F32 = np.float32
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
_TINY = np.finfo(np.float32).tiny

STORAGE_DTYPES: dict[QuantizationType, Any] = {
    QuantizationType.INT8: np.int8,
    QuantizationType.UINT8: np.uint8,
    QuantizationType.INT16: np.int16,
    QuantizationType.MIXED: np.int8,
}


def qrange(qtype: QuantizationType, num_bits: int) -> tuple[int, int]:
    """Saturation range of the codes: signed -2^(b-1) .. 2^(b-1)-1, unsigned 0 .. 2^b-1."""
    if qtype is QuantizationType.UINT8:
        return 0, (1 << num_bits) - 1
    return -(1 << (num_bits - 1)), (1 << (num_bits - 1)) - 1


def calibration_range(qmin: int, qmax: int, symmetric: bool) -> tuple[int, int]:
    """Integer range the parameters are computed for: symmetric signed ranges are narrowed to [-qmax, qmax]."""
    if symmetric and qmin < 0:
        return -qmax, qmax
    return qmin, qmax


def scale_zero_point(
    rmin: npt.ArrayLike, rmax: npt.ArrayLike, qmin: int, qmax: int, symmetric: bool
) -> tuple[FloatArray, IntArray]:
    """Scale and zero point for real ranges [rmin, rmax] (scalars or one value per channel).

    `qmin`/`qmax` are the *calibration* range (see `calibration_range`). The range is first widened to include
    0; a degenerate range (scale below the smallest normal float32) gives scale 1 and zero point 0, never a
    near-zero scale.
    """
    lo = np.minimum(np.asarray(rmin, dtype=F32), F32(0))
    hi = np.maximum(np.asarray(rmax, dtype=F32), F32(0))
    if symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = -amax, amax
    scale = ((hi.astype(np.float64) - lo.astype(np.float64)) / float(qmax - qmin)).astype(F32)
    degenerate = ~(scale >= _TINY)
    safe_scale = np.where(degenerate, F32(1), scale)
    if symmetric:
        zp = np.full(scale.shape, int(np.rint((qmin + qmax) / 2)), dtype=np.int64)
    else:
        zp = np.rint(F32(qmin) - lo / safe_scale).astype(np.int64)
        zp = np.clip(zp, qmin, qmax)
    zp = np.where(degenerate, 0, zp)
    return safe_scale.astype(F32), zp.astype(np.int64)


def f32_float(value: Any) -> float:
    """The float32 value as the shortest Python float that parses back to it (0.1, not 0.10000000149011612)."""
    return float(str(np.float32(value)))


@dataclasses.dataclass(frozen=True)
class QParams:
    """Parameters of one quantization: per tensor (`axis` None, 0-d arrays) or per channel along `axis`."""

    scale: FloatArray
    zero_point: IntArray
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def __eq__(self, other: object) -> bool:
        """Same axis, scales and zero points (the generated __eq__ would compare arrays element-wise and fail on
        per-channel parameters)."""
        if not isinstance(other, QParams):
            return NotImplemented
        return (self.axis == other.axis and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def first(self) -> tuple[float, int]:
        """A single (scale, zero point): the tensor's, or channel 0's for per-channel parameters."""
        return f32_float(self.scale.reshape(-1)[0]), int(self.zero_point.reshape(-1)[0])

    def to_dict(self) -> dict[str, Any]:
        if self.axis is None:
            return {"scale": f32_float(self.scale), "zero_point": int(self.zero_point), "axis": None}
        return {"scale": [f32_float(s) for s in self.scale], "zero_point": [int(z) for z in self.zero_point],
                "axis": self.axis}

    @classmethod
    def of(cls, scale: npt.ArrayLike, zero_point: npt.ArrayLike, axis: int | None = None) -> QParams:
        return cls(np.asarray(scale, dtype=F32), np.asarray(zero_point, dtype=np.int64), axis)

    @classmethod
    def identity(cls) -> QParams:
        return cls.of(1.0, 0)
