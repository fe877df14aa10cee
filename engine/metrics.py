"""Statistics counters and error metrics."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclasses.dataclass
class StatsDelta:
    """What one engine call adds to an instance's statistics (the web layer adds it atomically in the database).

    - clipped_values: elements whose code saturated at qmin/qmax, plus non-finite inputs when they are allowed
      (counted only when the request's `validate` is true);
    - total_values: elements quantized (quantize and quantize_dequantize);
    - quantize_calls: calls of quantize or quantize_dequantize;
    - dequantize_calls: calls of dequantize or quantize_dequantize;
    - cache_hits / cache_misses: dequantization cache look-ups that found / did not find a result (none when the
      cache is off or the array bypasses it);
    - last_scale / last_zero_point: parameters this call used (channel 0's when per channel), None if it used
      none (an identity, FLOAT16 or skipped layer leaves the previous values);
    - processing_time_ms: engine time of this call, in milliseconds.
    """

    clipped_values: int = 0
    total_values: int = 0
    quantize_calls: int = 0
    dequantize_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    processing_time_ms: float = 0.0
    last_scale: float | None = None
    last_zero_point: float | None = None


COUNTERS = ("clipped_values", "total_values", "quantize_calls", "dequantize_calls", "cache_hits", "cache_misses")


@dataclasses.dataclass
class Stats:
    """Cumulative counters of an engine instance (the spec's StatsResponse). last_* are 0.0 before any call."""

    clipped_values: int = 0
    total_values: int = 0
    quantize_calls: int = 0
    dequantize_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    last_scale: float = 0.0
    last_zero_point: float = 0.0
    processing_time_ms: float = 0.0

    def add(self, delta: StatsDelta) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(delta, name))
        self.processing_time_ms += delta.processing_time_ms
        if delta.last_scale is not None and delta.last_zero_point is not None:
            self.last_scale, self.last_zero_point = delta.last_scale, delta.last_zero_point

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sqnr_db(x: npt.ArrayLike, approx: npt.ArrayLike) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    xs = np.asarray(x, dtype=np.float64)
    err = xs - np.asarray(approx, dtype=np.float64)
    noise = float(np.dot(err.ravel(), err.ravel()))
    signal = float(np.dot(xs.ravel(), xs.ravel()))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf
