"""Calibration: running range statistics over any number of batches, in bounded memory.

A `RangeCollector` sees each batch once (`update`) and keeps only extrema and fixed-size state, never a copy of
the batches; `compute_range` then gives the real range [rmin, rmax] (0-d, or one value per channel) from
which `qparams.scale_zero_point` derives the parameters.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .config import CalibrationMethod
from .errors import InputError

F32 = np.float32
FloatArray = npt.NDArray[np.float32]

MOVING_AVERAGE_CONSTANT = 0.01  # as torch's MovingAverageMinMaxObserver: m += c * (batch_stat - m)


def reduce_axes(ndim: int, axis: int | None) -> tuple[int, ...]:
    return tuple(range(ndim)) if axis is None else tuple(i for i in range(ndim) if i != axis)


class RangeCollector:
    """Running statistics for one calibration."""

    def __init__(
        self,
        method: CalibrationMethod,
        *,
        axis: int | None = None,
        symmetric: bool = False,
        qmin: int = -128,
        qmax: int = 127,
        min_percentile: float = 0.01,
        max_percentile: float = 99.99,
    ) -> None:
        self.method = method
        self.axis = axis
        self.symmetric = symmetric
        self.qmin, self.qmax = qmin, qmax
        self.min_percentile, self.max_percentile = min_percentile, max_percentile
        self.batches = 0
        self.elements = 0
        self._min: FloatArray | None = None
        self._max: FloatArray | None = None
        self._avg_min: FloatArray | None = None
        self._avg_max: FloatArray | None = None

    def update(self, batch: npt.NDArray[np.float32]) -> None:
        x = np.asarray(batch, dtype=F32)
        if x.size == 0:
            raise InputError("calibration batches must not be empty", field="data")
        axes = reduce_axes(x.ndim, self.axis)
        bmin = np.min(x, axis=axes).astype(F32)
        bmax = np.max(x, axis=axes).astype(F32)
        if self._min is not None and bmin.shape != self._min.shape:
            raise InputError("calibration batches disagree on the number of channels", field="data")
        self._min = bmin if self._min is None else np.minimum(self._min, bmin)
        self._max = bmax if self._max is None else np.maximum(self._max, bmax)
        if self._avg_min is None or self._avg_max is None:
            self._avg_min, self._avg_max = bmin, bmax
        else:
            c = F32(MOVING_AVERAGE_CONSTANT)
            self._avg_min = (self._avg_min + c * (bmin - self._avg_min)).astype(F32)
            self._avg_max = (self._avg_max + c * (bmax - self._avg_max)).astype(F32)
        self.batches += 1
        self.elements += int(x.size)

    def compute_range(self) -> tuple[FloatArray, FloatArray]:
        if self._min is None or self._max is None or self._avg_min is None or self._avg_max is None:
            raise InputError("calibration needs at least one batch", field="data")
        if self.method is CalibrationMethod.MOVING_AVERAGE:
            return self._avg_min, self._avg_max
        return self._min, self._max
