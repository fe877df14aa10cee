"""What the admin shows beside an instance's form: its parameters as a table, its statistics with derived rates,
and the quality panel's charts (calibration histogram with the clip range and the grid's extent, per-channel
scales, per-layer SQNR of the latest job). Reads only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.utils.safestring import SafeString

from engine import QUALITY_FIELDS, STATS_FIELDS, QuantizationConfig, grid_extent, quality_summary

from . import registry
from .charts import bar_chart, histogram_chart
from .models import Job, QuantizerInstance

MAX_CHANNEL_BARS = 512  # beyond, the scales chart shows the first ones (its title says how many)


def _rate(numerator: float, denominator: float, scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
    return "-" if not denominator else f"{scale * numerator / denominator:.{digits}f}{unit}"


def parameter_rows(exported: dict[str, Any]) -> list[tuple[str, str]]:
    """The exported parameters as (name, value) rows: scalars as they are, lists by their length and extremes
    (the per-channel scales have their own chart), the calibration summary flattened."""
    rows: list[tuple[str, str]] = []
    for key, value in exported.items():
        if key in ("calibration", "layer_params") or value is None:
            continue
        if isinstance(value, list):
            flat = [v for v in _flatten(value) if isinstance(v, (int, float))]
            rows.append((key, f"{len(flat)} values, {min(flat):.6g} .. {max(flat):.6g}" if flat else "[]"))
        else:
            rows.append((key, str(value)))
    layers = exported.get("layer_params") or {}
    if layers:
        rows.append(("layer_params", f"{len(layers)} layer(s)"))
    calibration = exported.get("calibration") or {}
    for key in ("method", "batches", "elements"):
        if key in calibration:
            rows.append((f"calibration {key}", str(calibration[key])))
    if "range_min" in calibration:
        lo, hi = _extremes(calibration["range_min"], calibration["range_max"])
        rows.append(("calibration range", f"[{lo:.6g}, {hi:.6g}]"))
    return rows


def _flatten(value: Any) -> list[Any]:
    return [v for item in value for v in _flatten(item)] if isinstance(value, list) else [value]


def _extremes(range_min: Any, range_max: Any) -> tuple[float, float]:
    return min(_flatten(range_min) if isinstance(range_min, list) else [range_min]), max(
        _flatten(range_max) if isinstance(range_max, list) else [range_max])


def stats_rows(stats: Any) -> list[tuple[str, str]]:
    """The stored counters, then the rates derived from them, then the quality figures."""
    rows = [(name, str(getattr(stats, name))) for name in STATS_FIELDS]
    calls = stats.quantize_calls + stats.dequantize_calls
    lookups = stats.cache_hits + stats.cache_misses
    rows += [
        ("clipped share", _rate(stats.clipped_values, stats.total_values, 100.0, " %")),
        ("cache hit rate", _rate(stats.cache_hits, lookups, 100.0, " %", 1)),
        ("values per quantize call", _rate(stats.total_values, stats.quantize_calls, digits=1)),
        ("engine time per call", _rate(stats.processing_time_ms, calls, unit=" ms")),
        ("engine throughput", _rate(stats.total_values, stats.processing_time_ms, 1e-3, " M values/s", 1)),
    ]
    quality = quality_summary({name: getattr(stats, name) for name in QUALITY_FIELDS})
    for key, label in (("latest_sqnr_db", "latest SQNR"), ("min_sqnr_db", "lowest SQNR")):
        rows.append((label, "-" if quality[key] is None else f"{quality[key]:.2f} dB"))
    rows.append(("clipped share of reported calls",
                 "-" if quality["clipped_share"] is None else f"{100 * quality['clipped_share']:.3f} %"))
    rows.append(("reported calls", str(quality["reported_calls"])))
    return rows


def calibration_histogram(exported: dict[str, Any], config: QuantizationConfig) -> SafeString | None:
    calibration = exported.get("calibration") or {}
    histogram = calibration.get("histogram")
    if not histogram:
        return None
    lo, hi = _extremes(calibration["range_min"], calibration["range_max"])
    marks = [("clip range min", lo, "clip"), ("clip range max", hi, "clip")]
    if exported.get("global_scale") is not None:
        extent = grid_extent(config.quantization_type, config.num_bits, exported["global_scale"],
                             exported.get("global_zero_point") or 0)
        if extent is not None:
            marks += [("grid min", extent[0], "grid"), ("grid max", extent[1], "grid")]
    return histogram_chart(histogram["counts"], histogram["first_edge"], histogram["bin_width"],
                           title=f"last calibration data ({calibration.get('elements', '?')} values, "
                                 f"{len(histogram['counts'])} bins)", marks=marks)


def channel_scales_chart(exported: dict[str, Any]) -> SafeString | None:
    scales = exported.get("per_channel_scales")
    if not scales:
        return None
    shown = scales[:MAX_CHANNEL_BARS]
    title = "per-channel scales" + (f" (first {len(shown)} of {len(scales)})" if len(shown) < len(scales) else "")
    return bar_chart([(f"channel {i}", float(s)) for i, s in enumerate(shown)], title=title, css_class="scales")


def layer_sqnr_chart(layers: Sequence[tuple[str, float | None]], job_label: str) -> SafeString:
    return bar_chart(list(layers), title=f"per-layer SQNR of {job_label}", unit=" dB", css_class="layers")


def latest_job_chart(instance: QuantizerInstance) -> SafeString | None:
    """The per-layer SQNR of the instance's latest succeeded model job, in checkpoint order."""
    job = instance.jobs.filter(status=Job.Status.SUCCEEDED).order_by("-finished_at", "-created_at").first()
    if job is None:
        return None
    layers = list(job.layers.order_by("position").values_list("name", "sqnr_db"))
    return layer_sqnr_chart(layers, f"job {str(job.pk)[:8]} ({len(layers)} tensors)")


def instance_overview(instance: QuantizerInstance) -> dict[str, Any]:
    """The context of the admin's side panel for a saved instance."""
    config = QuantizationConfig.from_dict(instance.config)
    exported = registry.active().get(instance).export_parameters()
    charts = [chart for chart in (calibration_histogram(exported, config), channel_scales_chart(exported),
                                  latest_job_chart(instance)) if chart is not None]
    return {"parameter_rows": parameter_rows(exported), "stats_rows": stats_rows(instance.stats), "charts": charts}
