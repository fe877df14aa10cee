"""Quantization parameters: integer ranges, and scale / zero point from a real range by one of three rules
(`QParamsRule`: ONNX DynamicQuantizeLinear, onnxruntime's quantization tooling, PyTorch's observers), each bit-exact
with its anchor; see docs/numerics.md."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels
from .config import QParamsRule, QuantizationType

F32 = np.float32
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

STORAGE_DTYPES: dict[QuantizationType, Any] = {
    QuantizationType.INT8: np.int8,
    QuantizationType.UINT8: np.uint8,
    QuantizationType.INT16: np.int16,
    QuantizationType.MIXED: np.int8,
    QuantizationType.INT4: np.int8,  # one code per int8: unpacked (packing is the wire format's business)
    QuantizationType.UINT4: np.uint8,
}


def qrange(qtype: QuantizationType, num_bits: int) -> tuple[int, int]:
    """Saturation range of the codes: signed -2^(b-1) .. 2^(b-1)-1, unsigned 0 .. 2^b-1."""
    if qtype.is_unsigned:
        return 0, (1 << num_bits) - 1
    return -(1 << (num_bits - 1)), (1 << (num_bits - 1)) - 1


def calibration_range(qmin: int, qmax: int, symmetric: bool, rule: QParamsRule = QParamsRule.ort_tooling,
                      narrow: bool = True) -> tuple[int, int]:
    """Integer range the parameters are computed for. `onnx` and `ort_tooling` narrow symmetric signed ranges to
    [-qmax, qmax] (ORT's tooling does not for INT4: `narrow` False); `torch` always uses the full range."""
    if symmetric and qmin < 0 and narrow and rule is not QParamsRule.torch:
        return -qmax, qmax
    return qmin, qmax


def _flat(a: npt.ArrayLike) -> FloatArray:
    return np.ascontiguousarray(a, dtype=F32).reshape(-1)


def _widened(rmin: npt.ArrayLike, rmax: npt.ArrayLike, symmetric: bool) -> tuple[FloatArray, FloatArray]:
    lo, hi = np.array(rmin, F32, order="C"), np.array(rmax, F32, order="C")  # (copies: widened in place)
    if lo.shape != hi.shape:
        lo, hi = (np.ascontiguousarray(a) for a in np.broadcast_arrays(lo, hi))
    flat_lo, flat_hi = lo.reshape(-1), hi.reshape(-1)
    kernels.widen_all(flat_lo, flat_hi, symmetric, flat_lo, flat_hi)
    return lo, hi


def _ort_tooling(lo: FloatArray, hi: FloatArray, qmin: int, qmax: int, symmetric: bool
                 ) -> tuple[FloatArray, IntArray]:
    """compute_scale_zp: float64 range and scale; below float32 tiny (compared in float64): scale 1, zp 0."""
    scale64 = (hi.astype(np.float64) - lo.astype(np.float64)) / (float(qmax) - float(qmin))
    tiny = ~(scale64 >= float(kernels.TINY))
    safe64 = np.where(tiny, 1.0, scale64)
    if symmetric:
        zp = np.full(scale64.shape, np.round((qmin + qmax) / 2.0))
    else:
        zp = np.clip(np.round(float(qmin) - lo.astype(np.float64) / safe64), qmin, qmax)
    zp = np.where(tiny, 0, zp).astype(np.int64)
    return safe64.astype(F32), zp


def _float32_rule(lo: FloatArray, hi: FloatArray, qmin: int, qmax: int, symmetric: bool, rule: QParamsRule
                  ) -> tuple[FloatArray, IntArray, npt.NDArray[np.bool_]]:
    """`onnx` and `torch` over arrays (compiled in kernels, where the fused grouped kernel inlines the same
    function): scale, zero point, and where ort_tooling's replace them."""
    scale, zp, fallback = np.empty(lo.shape, F32), np.empty(lo.shape, F32), np.empty(lo.shape, np.bool_)
    kernels.float32_params_all(_flat(lo), _flat(hi), qmin, qmax, symmetric, rule is QParamsRule.torch,
                               scale.reshape(-1), zp.reshape(-1), fallback.reshape(-1))
    return scale, zp.astype(np.int64), fallback


def scale_zero_point(
    rmin: npt.ArrayLike, rmax: npt.ArrayLike, qmin: int, qmax: int, symmetric: bool,
    rule: QParamsRule = QParamsRule.ort_tooling,
) -> tuple[FloatArray, IntArray]:
    """Scale and zero point for real ranges [rmin, rmax] (scalars or one value per channel) by `rule`.

    `qmin`/`qmax` are the *calibration* range (see `calibration_range`). The range is first widened to include
    0. The one fallback, for every rule: where the rule's float32 scale is not a finite normal float32 (a range
    wider than FLT_MAX overflows, a tiny range underflows) or the range is [0, 0], the parameters are
    `ort_tooling`'s for the same range (float64, which cannot overflow; scale 1 and zero point 0 below the
    smallest normal float32). Never an infinite, zero or subnormal scale.
    """
    lo, hi = _widened(rmin, rmax, symmetric)
    if rule is QParamsRule.ort_tooling:
        return _ort_tooling(lo, hi, qmin, qmax, symmetric)
    scale, zp, fallback = _float32_rule(lo, hi, qmin, qmax, symmetric, rule)
    if fallback.any():
        exact, exact_zp = _ort_tooling(lo, hi, qmin, qmax, symmetric)
        scale = np.where(fallback, exact, scale).astype(F32)
        zp = np.where(fallback, exact_zp, zp).astype(np.int64)
    return scale.astype(F32), zp.astype(np.int64)


def f32_float(value: Any) -> float:
    """The float32 value as the shortest Python float that parses back to it (0.1, not 0.10000000149011612)."""
    return float(str(np.float32(value)))


@dataclasses.dataclass(frozen=True)
class QParams:
    """Parameters of one quantization: per tensor (`axis` None, 0-d arrays), per channel along `axis` (1-D
    arrays), or per block (`block_size` set: arrays shaped like ONNX's scale initializer, the data's shape with
    ceil(dim / block_size) along `axis`)."""

    scale: FloatArray
    zero_point: IntArray
    axis: int | None = None
    block_size: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None and self.block_size is None

    @property
    def blocked(self) -> bool:
        return self.block_size is not None

    def __eq__(self, other: object) -> bool:
        """Same axis, block size, scales and zero points (the generated __eq__ would compare arrays element-wise
        and fail on per-channel parameters)."""
        if not isinstance(other, QParams):
            return NotImplemented
        return (self.axis == other.axis and self.block_size == other.block_size
                and np.array_equal(self.scale, other.scale) and np.array_equal(self.zero_point, other.zero_point))

    def first(self) -> tuple[float, int]:
        """A single (scale, zero point): the tensor's, or the first channel's / block's."""
        return self._first

    @functools.cached_property
    def _first(self) -> tuple[float, int]:
        # Formed once per object: a request asks three times (its statistics, the stored parameters, the headers),
        # and f32_float's shortest form is a few microseconds each.
        return f32_float(self.scale.reshape(-1)[0]), int(self.zero_point.reshape(-1)[0])

    def to_dict(self) -> dict[str, Any]:
        if self.block_size is not None:
            return {"scale": _nested(self.scale, f32_float), "zero_point": _nested(self.zero_point, int),
                    "axis": self.axis, "block_size": self.block_size}
        if self.axis is None:
            scale, zero_point = self._first
            return {"scale": scale, "zero_point": zero_point, "axis": None}
        return {"scale": [f32_float(s) for s in self.scale], "zero_point": [int(z) for z in self.zero_point],
                "axis": self.axis}

    @classmethod
    def from_dict(cls, data: Any) -> QParams:
        """What to_dict wrote."""
        return cls.of(data["scale"], data["zero_point"], data.get("axis"), data.get("block_size"))

    @classmethod
    def of(cls, scale: npt.ArrayLike, zero_point: npt.ArrayLike, axis: int | None = None,
           block_size: int | None = None) -> QParams:
        return cls(np.asarray(scale, dtype=F32), np.asarray(zero_point, dtype=np.int64), axis, block_size)

    @classmethod
    def identity(cls) -> QParams:
        return cls.of(1.0, 0)


def _nested(arr: npt.NDArray[Any], convert: Any) -> Any:
    """An array as nested lists of Python numbers."""
    if arr.ndim == 0:
        return convert(arr)
    return [_nested(a, convert) for a in arr]
