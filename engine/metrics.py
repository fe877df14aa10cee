"""Statistics counters and error metrics."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .quality import QualityReport


def _counter() -> Any:
    return dataclasses.field(default=0, metadata={"counter": True})


@dataclasses.dataclass
class Stats:
    """Cumulative statistics of an instance: the spec's StatsResponse fields, declared once here (the database
    model and the API schema derive theirs from this). Counters are added; last_* are replaced.

    - clipped_values: elements whose code saturated at qmin/qmax, plus non-finite inputs when they are allowed
      (counted only when the request's `validate` is true);
    - total_values: elements quantized (quantize and quantize_dequantize);
    - quantize_calls: calls of quantize or quantize_dequantize;
    - dequantize_calls: calls of dequantize or quantize_dequantize;
    - cache_hits / cache_misses: dequantization cache look-ups that found / did not find a result (none when the
      cache is off or the array bypasses it);
    - last_scale / last_zero_point: parameters of the latest call that used some (channel 0's when per channel);
    - processing_time_ms: engine time, in milliseconds.
    """

    clipped_values: int = _counter()
    total_values: int = _counter()
    quantize_calls: int = _counter()
    dequantize_calls: int = _counter()
    cache_hits: int = _counter()
    cache_misses: int = _counter()
    last_scale: float = 0.0
    last_zero_point: int = 0
    processing_time_ms: float = 0.0

    def add(self, delta: StatsDelta) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(delta, name))
        self.processing_time_ms += delta.processing_time_ms
        if delta.last_scale is not None and delta.last_zero_point is not None:
            self.last_scale, self.last_zero_point = delta.last_scale, delta.last_zero_point

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COUNTERS = tuple(f.name for f in dataclasses.fields(Stats) if f.metadata.get("counter"))
STATS_FIELDS = tuple(f.name for f in dataclasses.fields(Stats))


@dataclasses.dataclass
class StatsDelta:
    """What one engine call adds to the statistics (the web layer adds it atomically in the database): the
    counters of `Stats`, this call's time, and the parameters it used (None when it used none: an identity,
    FLOAT16 or skipped layer leaves the previous values)."""

    clipped_values: int = 0
    total_values: int = 0
    quantize_calls: int = 0
    dequantize_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    processing_time_ms: float = 0.0
    last_scale: float | None = None
    last_zero_point: int | None = None


def _latest() -> Any:
    return dataclasses.field(default=None, metadata={"latest": True})


def _lowest() -> Any:
    return dataclasses.field(default=None, metadata={"lowest": True})


@dataclasses.dataclass
class QualityStats:
    """What the calls that asked for a quality report add up to (declared once here: the database columns and the
    API's `quality` object derive from it). Counters are added; `latest` fields replaced; `lowest` fields keep
    the minimum of the non-null values.

    - reported_calls: quantize / quantize_dequantize calls with `report`;
    - reported_values, reported_clipped: their elements, and those clipped (clipped_share = clipped / values);
    - latest_sqnr_db: the SQNR of the latest reported call (null when it was exact: see engine.quality);
    - min_sqnr_db: the lowest SQNR reported since the last reset (exact reconstructions do not lower it).
    """

    reported_calls: int = _counter()
    reported_values: int = _counter()
    reported_clipped: int = _counter()
    latest_sqnr_db: float | None = _latest()
    min_sqnr_db: float | None = _lowest()

    def add(self, report: QualityReport) -> None:
        delta = quality_delta(report)
        for name in QUALITY_COUNTERS:
            setattr(self, name, getattr(self, name) + delta[name])
        for name in QUALITY_LATEST:
            setattr(self, name, delta[name])
        for name in QUALITY_LOWEST:
            value, current = delta[name], getattr(self, name)
            if value is not None:
                setattr(self, name, value if current is None else min(current, value))

    def to_dict(self) -> dict[str, Any]:
        """The API's `quality` object."""
        return quality_summary(dataclasses.asdict(self))


QUALITY_FIELDS = tuple(f.name for f in dataclasses.fields(QualityStats))
QUALITY_COUNTERS = tuple(f.name for f in dataclasses.fields(QualityStats) if f.metadata.get("counter"))
QUALITY_LATEST = tuple(f.name for f in dataclasses.fields(QualityStats) if f.metadata.get("latest"))
QUALITY_LOWEST = tuple(f.name for f in dataclasses.fields(QualityStats) if f.metadata.get("lowest"))


def quality_delta(report: QualityReport) -> dict[str, Any]:
    """What one report adds to each QualityStats field (the web layer applies it in one UPDATE)."""
    return {"reported_calls": 1, "reported_values": report.values, "reported_clipped": report.clipped,
            "latest_sqnr_db": report.sqnr_db, "min_sqnr_db": report.sqnr_db}


def quality_summary(stored: dict[str, Any]) -> dict[str, Any]:
    """The `quality` object of the statistics from the stored QualityStats fields: the latest and lowest SQNR,
    the clipped share of the reported calls' values (null before any reported call), and the call count."""
    values = stored["reported_values"]
    return {
        "latest_sqnr_db": stored["latest_sqnr_db"],
        "min_sqnr_db": stored["min_sqnr_db"],
        "clipped_share": stored["reported_clipped"] / values if values else None,
        "reported_calls": stored["reported_calls"],
    }


def sqnr_db(x: npt.ArrayLike, approx: npt.ArrayLike) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    xs = np.asarray(x, dtype=np.float64)
    err = xs - np.asarray(approx, dtype=np.float64)
    noise = float(np.dot(err.ravel(), err.ravel()))
    signal = float(np.dot(xs.ravel(), xs.ravel()))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf
