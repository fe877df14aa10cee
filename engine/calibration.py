"""Calibration: running range statistics over any number of batches, in bounded memory.

A `RangeCollector` sees each batch once (`update`) and keeps only extrema and fixed-size state, never a copy of
the batches; `compute_range` then gives the real range [rmin, rmax] (0-d, or one value per channel) from
which `qparams.scale_zero_point` derives the parameters.

Methods (`CalibrationMethod`):

- MINMAX: the global min / max of everything seen (torch MinMaxObserver, ModelOpt MaxCalibrator).
- MOVING_AVERAGE: torch's MovingAverageMinMaxObserver: the first batch sets min / max, then every batch moves
  them by `m += c * (batch_stat - m)` with c = `MOVING_AVERAGE_CONSTANT`.
- PERCENTILE: `min_percentile` / `max_percentile` of all values seen, estimated from the running histogram
  (below). Symmetric: `max_percentile` of |x| gives amax and the range is (-amax, amax) (as ORT's
  PercentileCalibrater does with its default symmetric=True); `min_percentile` is not used then.
- MSE: the clip range minimising the expected squared quantization error over the histogram, as TensorRT /
  NVIDIA ModelOpt's histogram "mse" calibrator does. Candidates are the histogram's bin edges (plus the observed
  extreme); the error of each candidate is that of the engine's quantizer for it (the scale and zero point
  `qparams.scale_zero_point` would derive, codes within the calibration range, values beyond it clipped),
  integrated exactly over each bin under the usual assumption that values are spread uniformly within a bin.
  Symmetric: a 1-d search for amax on the histogram of |x|, the range is (-amax, amax); the error model is the
  narrow range [-qmax, qmax] on both sides (the engine's QuantizeLinear may still use code qmin for the most
  negative values, which can only lower the error). Asymmetric: rmin (among the edges in [min x, 0]) and rmax
  (among those in [0, max x]) are chosen by coordinate descent: starting from (min x, max x), the best rmax for
  the current rmin, then the best rmin for that rmax, until neither moves (at most `MSE_ROUNDS` rounds). Each 1-d
  search evaluates a coarse grid of at most `MSE_COARSE_CANDIDATES` edges and then every edge within two coarse
  steps of the best one.
- ENTROPY: the threshold minimising the KL divergence between the reference histogram and its quantized
  version, as TensorRT's entropy calibration / ModelOpt's `_compute_amax_entropy` / ORT's EntropyCalibrater: for
  each candidate i (bins kept) from `num_quantized_bins` to the last non-empty bin, the reference P is the first
  i bins with the outliers beyond added to the last one, Q merges those i bins into `num_quantized_bins` groups
  and spreads each group back uniformly over its non-empty bins; the threshold is the upper edge of the best i
  (ties go to the widest). `num_quantized_bins` defaults to half the calibration code range plus one: 128 for
  int8 / uint8, 8 for int4 narrow range. Symmetric: on the histogram of |x|, range (-t, t). Asymmetric: the same
  search independently on each side of 0 (the positive values, and the mirrored negative ones), each side with
  `num_quantized_bins` levels, giving (-t_neg, t_pos); a side without data gives 0.

Running histograms (PERCENTILE, MSE, ENTROPY; one per channel when `axis` is set): `num_bins` (2048) bins of
width w on a grid anchored at 0: bin i covers [(start + i) w, (start + i + 1) w) (the last bin also holds its
upper edge), `start` an integer. The first batch sets w = max|x| / num_bins (symmetric, |x| from 0, start 0:
exactly `np.histogram(|x|, 2048, (0, max|x|))`) or w = (max - min) / (num_bins - 1) (asymmetric; one bin is spent
on aligning the window to the grid). A batch outside the window widens it: the width is multiplied by the
smallest integer k for which every old count and the new batch fit num_bins bins, the window is re-placed, and
the old histogram is re-binned by adding up the old bins that fall into each new one. Because k is an integer
and the grid is anchored at 0, every new edge is an old edge: no count is ever split or interpolated (torch's
HistogramObserver upsamples and interpolates instead, ORT and ModelOpt append bins of the old width, which
makes the bin count grow with the range). The cost is resolution: after a widening the data spans between
num_bins / 2 and num_bins bins. The state is fixed in size: counts (channels x num_bins) plus three numbers per
channel, whatever the number of batches. A channel whose values so far are all one value has no width yet; its
count is kept until a batch with a spread arrives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import CalibrationMethod
from .errors import InputError
from .qparams import calibration_range

F32 = np.float32
FloatArray = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
I64Array = npt.NDArray[np.int64]

MOVING_AVERAGE_CONSTANT = 0.01  # as torch's MovingAverageMinMaxObserver: m += c * (batch_stat - m)
NUM_BINS = 2048  # histogram bins per tensor / channel (TensorRT, ModelOpt, ORT's 2048-bin calibrators)
MSE_COARSE_CANDIDATES = 256  # coarse grid of the MSE search; then every edge around the best one
MSE_ROUNDS = 4  # coordinate-descent rounds of the asymmetric MSE search
ENTROPY_CHUNK = 1 << 20  # (candidates x quantized bins) evaluated together
BINNING_CHUNK = 1 << 20  # elements binned at a time (bounds the temporaries of `update`)

DISPLAY_BINS = 64  # the histogram kept with the calibration state, for people to look at (the admin's chart)
HISTOGRAM_METHODS = (CalibrationMethod.PERCENTILE, CalibrationMethod.MSE, CalibrationMethod.ENTROPY)


def reduce_axes(ndim: int, axis: int | None) -> tuple[int, ...]:
    return tuple(range(ndim)) if axis is None else tuple(i for i in range(ndim) if i != axis)


class RunningHistogram:
    """One fixed-size histogram per channel on a grid anchored at 0 (see the module docstring)."""

    def __init__(self, channels: int, num_bins: int = NUM_BINS, *, from_zero: bool = False) -> None:
        if num_bins < 2:
            raise ValueError("num_bins must be at least 2")
        self.num_bins = num_bins
        self.from_zero = from_zero  # histogram of |x|: the window always starts at 0
        self.counts: I64Array = np.zeros((channels, num_bins), dtype=np.int64)
        self.width: F64Array = np.zeros(channels, dtype=np.float64)  # 0: no spread seen yet
        self.start: F64Array = np.zeros(channels, dtype=np.float64)  # integer-valued index of the first bin
        self.pending: I64Array = np.zeros(channels, dtype=np.int64)  # values seen while width is 0 ...
        self.point: F64Array = np.zeros(channels, dtype=np.float64)  # ... all equal to this value

    def add(self, rows: npt.NDArray[np.float32], lo: F64Array, hi: F64Array) -> None:
        """Add `rows` (channels x n values; |x| for a `from_zero` histogram) whose per-row extrema are lo / hi."""
        if self.from_zero:
            lo = np.zeros_like(lo)
        initialised = self.width > 0
        width = np.where(initialised, self.width, 1.0)
        # the same tests as `_fits`: positions in bin units against the window [start, start + num_bins]
        outside = initialised & ((lo / width < self.start) | (hi / width > self.start + self.num_bins))
        for c in np.flatnonzero(~initialised | outside):
            if initialised[c]:
                self._widen(int(c), float(lo[c]), float(hi[c]))
            else:
                self._initialise(int(c), float(lo[c]), float(hi[c]))
        waiting = self.width <= 0  # channels whose values so far are all one value: just count them
        if waiting.any():
            self.point[waiting] = rows[waiting, 0]
            self.pending[waiting] += rows.shape[1]
        chans = np.flatnonzero(~waiting)
        if chans.size == 0:
            return
        width = self.width[chans][:, None]
        start = self.start[chans][:, None]
        offsets = (np.arange(chans.size, dtype=np.int64) * self.num_bins)[:, None]
        step = max(1, BINNING_CHUNK // chans.size)
        acc = np.zeros(chans.size * self.num_bins, dtype=np.int64)
        for begin in range(0, rows.shape[1], step):
            part = rows[chans, begin:begin + step].astype(np.float64)
            idx = np.floor(part / width) - start
            np.clip(idx, 0, self.num_bins - 1, out=idx)  # rounding at the window's edges; the last bin is closed
            acc += np.bincount((idx.astype(np.int64) + offsets).ravel(), minlength=acc.size)
        self.counts[chans] += acc.reshape(chans.size, self.num_bins)

    def _index(self, c: int, value: float) -> int:
        i = math.floor(value / float(self.width[c])) - int(self.start[c])
        return min(max(i, 0), self.num_bins - 1)

    def _fits(self, lo: float, hi: float, width: float, start: int) -> bool:
        return lo / width >= start and hi / width <= start + self.num_bins

    def _initialise(self, c: int, lo: float, hi: float) -> None:
        """First spread of channel c: place the window on [lo, hi] and the single value counted before, if any.
        Nothing happens while the channel's values are all one value (`add` counts them)."""
        n_prev = int(self.pending[c])
        if n_prev:
            lo, hi = min(lo, float(self.point[c])), max(hi, float(self.point[c]))
        if not hi > lo:
            return
        nb = self.num_bins
        width = hi / nb if self.from_zero else (hi - lo) / (nb - 1)
        start = 0 if self.from_zero else math.floor(lo / width)
        while not self._fits(lo, hi, width, start):  # rounding: at most a few ulps
            width = float(np.nextafter(width, np.inf))
            start = 0 if self.from_zero else math.floor(lo / width)
        self.width[c], self.start[c] = width, float(start)
        if n_prev:
            self.counts[c, self._index(c, float(self.point[c]))] += n_prev
            self.pending[c] = 0

    def _widen(self, c: int, lo: float, hi: float) -> None:
        """Widen channel c's window to hold [lo, hi] and its counts: the width times the smallest integer k that
        fits, the old bins merged exactly (every new edge is an old edge, as the grid is anchored at 0)."""
        nb = self.num_bins
        width, start = float(self.width[c]), int(self.start[c])
        nonzero = np.flatnonzero(self.counts[c])
        first = start + int(nonzero[0]) if nonzero.size else start
        last = start + int(nonzero[-1]) if nonzero.size else start
        span = max(hi / width, last + 1.0) - min(lo / width, float(first))  # in old bins
        k = max(1, math.ceil(span / nb))
        new_start = start
        for _ in range(64):
            new_start = min(math.floor(lo / (width * k)), first // k)
            if self._fits(lo, hi, width * k, new_start) and last // k < new_start + nb:
                break
            k += max(1, k >> 40)
        absolute = start + nonzero.astype(np.int64)
        if k < 1 << 62:
            merged_index = absolute // k - new_start
        else:  # |absolute| is small: the float quotient is exact enough for the floor
            merged_index = np.floor(absolute / float(k)).astype(np.int64) - new_start
        np.clip(merged_index, 0, nb - 1, out=merged_index)
        merged = np.zeros(nb, dtype=np.int64)
        np.add.at(merged, merged_index, self.counts[c, nonzero])
        self.counts[c] = merged
        self.width[c] = width * k
        self.start[c] = float(new_start)

    def channel(self, c: int) -> tuple[F64Array, float, float]:
        """Counts of channel c (as float64), the lower edge of its first bin, and the bin width."""
        width = float(self.width[c])
        return self.counts[c].astype(np.float64), float(self.start[c]) * width, width


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
        num_bins: int = NUM_BINS,
        num_quantized_bins: int | None = None,
    ) -> None:
        self.method = method
        self.axis = axis
        self.symmetric = symmetric
        self.qmin, self.qmax = qmin, qmax
        self.min_percentile, self.max_percentile = min_percentile, max_percentile
        self.num_bins = num_bins
        cmin, cmax = calibration_range(qmin, qmax, symmetric)
        self.num_quantized_bins = num_quantized_bins if num_quantized_bins is not None else (cmax - cmin) // 2 + 1
        self.batches = 0
        self.elements = 0
        self._min: FloatArray | None = None
        self._max: FloatArray | None = None
        self._avg_min: FloatArray | None = None
        self._avg_max: FloatArray | None = None
        self.histogram: RunningHistogram | None = None  # created by the first batch of a histogram method
        self._abs_min: F64Array | None = None  # per-channel min |x| (symmetric histograms; for percentiles)
        self.display = RunningHistogram(1, DISPLAY_BINS)  # of every value, whatever the method

    def update(self, batch: npt.NDArray[np.float32]) -> None:
        """Fold one batch (any shape; finite values) into the running state. An empty batch is an InputError."""
        x = np.asarray(batch, dtype=F32)
        if x.size == 0:
            raise InputError("calibration batches must not be empty", field="data")
        if self.axis is not None and not 0 <= self.axis < x.ndim:
            raise InputError(f"channel axis {self.axis} is out of range for a {x.ndim}-d batch", field="data")
        axes = reduce_axes(x.ndim, self.axis)
        bmin = np.min(x, axis=axes).astype(F32)
        bmax = np.max(x, axis=axes).astype(F32)
        if not (np.all(np.isfinite(bmin)) and np.all(np.isfinite(bmax))):
            raise InputError("calibration data must be finite", field="data")
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
        if self.method in HISTOGRAM_METHODS:
            self._add_to_histogram(x, bmin, bmax)
        self.display.add(x.reshape(1, -1), np.array([np.min(bmin)], np.float64), np.array([np.max(bmax)], np.float64))
        self.batches += 1
        self.elements += int(x.size)

    def _add_to_histogram(self, x: FloatArray, bmin: FloatArray, bmax: FloatArray) -> None:
        rows = x.reshape(1, -1) if self.axis is None else np.moveaxis(x, self.axis, 0).reshape(x.shape[self.axis], -1)
        lo = np.asarray(bmin, dtype=np.float64).reshape(-1)
        hi = np.asarray(bmax, dtype=np.float64).reshape(-1)
        if self.symmetric:
            rows = np.abs(rows)
            lo, hi = np.zeros_like(hi), np.maximum(np.abs(lo), np.abs(hi))
            abs_min = rows.min(axis=1).astype(np.float64)
            self._abs_min = abs_min if self._abs_min is None else np.minimum(self._abs_min, abs_min)
        if self.histogram is None:
            self.histogram = RunningHistogram(rows.shape[0], self.num_bins, from_zero=self.symmetric)
        self.histogram.add(rows, lo, hi)

    def display_histogram(self) -> dict[str, Any]:
        """The DISPLAY_BINS-bin histogram of all values seen, JSON-ready: `counts`, the lower edge of the first bin
        and the bin width (bin i covers [first_edge + i w, first_edge + (i + 1) w)). Values all equal: one bin of
        width 0 at that value."""
        h = self.display
        if h.width[0] <= 0:
            return {"counts": [int(h.pending[0])], "first_edge": float(h.point[0]), "bin_width": 0.0}
        counts, first_edge, width = h.channel(0)
        return {"counts": [int(c) for c in counts], "first_edge": first_edge, "bin_width": width}

    def compute_range(self) -> tuple[FloatArray, FloatArray]:
        """(rmin, rmax) as float32: 0-d, or one value per channel when `axis` is set. MINMAX and MOVING_AVERAGE
        give the observed (or averaged) min / max; the histogram methods give (-amax, amax) when symmetric."""
        if self._min is None or self._max is None or self._avg_min is None or self._avg_max is None:
            raise InputError("calibration needs at least one batch", field="data")
        if self.method is CalibrationMethod.MOVING_AVERAGE:
            return self._avg_min, self._avg_max
        if self.method not in HISTOGRAM_METHODS or self.histogram is None:
            return self._min, self._max
        mins = np.asarray(self._min, dtype=np.float64).reshape(-1)
        maxs = np.asarray(self._max, dtype=np.float64).reshape(-1)
        lo_out = np.empty(mins.shape, dtype=np.float64)
        hi_out = np.empty(maxs.shape, dtype=np.float64)
        for c in range(mins.size):
            lo_out[c], hi_out[c] = self._channel_range(c, float(mins[c]), float(maxs[c]))
        shape = np.shape(self._min)
        return lo_out.astype(F32).reshape(shape), hi_out.astype(F32).reshape(shape)

    def _channel_range(self, c: int, lo: float, hi: float) -> tuple[float, float]:
        assert self.histogram is not None
        hist = self.histogram
        if self.symmetric:
            top = max(abs(lo), abs(hi))
            if hist.width[c] <= 0 or top == 0.0:
                return 0.0 - top, top
            counts, first_edge, width = hist.channel(c)
            if self.method is CalibrationMethod.PERCENTILE:
                abs_min = 0.0 if self._abs_min is None else float(self._abs_min[c])
                amax = histogram_percentile(counts, first_edge, width, self.max_percentile, abs_min, top)
            elif self.method is CalibrationMethod.MSE:
                amax = mse_symmetric_amax(counts, width, top, self.qmin, self.qmax)
            else:
                amax = entropy_threshold(counts, width, top, self.num_quantized_bins)
            return 0.0 - amax, amax
        if hist.width[c] <= 0 or lo == hi:
            return lo, hi
        counts, first_edge, width = hist.channel(c)
        if self.method is CalibrationMethod.PERCENTILE:
            return (histogram_percentile(counts, first_edge, width, self.min_percentile, lo, hi),
                    histogram_percentile(counts, first_edge, width, self.max_percentile, lo, hi))
        if self.method is CalibrationMethod.MSE:
            return mse_asymmetric_range(counts, first_edge, width, lo, hi, self.qmin, self.qmax)
        start = int(hist.start[c])
        pos_counts, pos_width = one_sided(counts, start, width, positive=True)
        neg_counts, neg_width = one_sided(counts, start, width, positive=False)
        t_pos = entropy_threshold(pos_counts, pos_width, max(hi, 0.0), self.num_quantized_bins) if hi > 0 else 0.0
        t_neg = entropy_threshold(neg_counts, neg_width, max(-lo, 0.0), self.num_quantized_bins) if lo < 0 else 0.0
        return 0.0 - t_neg, t_pos


# ---------------------------------------------------------------------- percentile
def histogram_percentile(counts: F64Array, first_edge: float, width: float, percentile: float,
                         vmin: float, vmax: float) -> float:
    """numpy's default (linear) percentile of the histogrammed values.

    Order statistic j (0-based) is estimated inside its bin assuming the bin's values are evenly spread (the
    m-th of c values in bin [e, e + w) at e + (m + 0.5) w / c) and kept within the observed [vmin, vmax]; the
    first and last are the observed `vmin` and `vmax` themselves.
    Percentile p interpolates linearly between order statistics floor(r) and floor(r) + 1, r = p/100 (n - 1).
    """
    n = round(float(counts.sum()))
    if n <= 1:
        return vmax
    cumulative = np.cumsum(counts)

    def order_statistic(j: int) -> float:
        if j >= n - 1:
            return vmax
        if j <= 0:
            return vmin
        b = int(np.searchsorted(cumulative, j, side="right"))
        before = float(cumulative[b] - counts[b])
        value = first_edge + (b + (j - before + 0.5) / float(counts[b])) * width
        return min(max(value, vmin), vmax)

    rank = min(max(percentile, 0.0), 100.0) / 100.0 * (n - 1)
    j = math.floor(rank)
    low = order_statistic(j)
    frac = rank - j
    if frac == 0.0:
        return low
    return low + frac * (order_statistic(j + 1) - low)


# ---------------------------------------------------------------------- MSE
def _error_antiderivative(edges: F64Array, scale: F64Array, lo_r: F64Array, hi_r: F64Array) -> F64Array:
    """P(e) = integral up to e of the squared error of quantizing v with step `scale` to codes representing
    [lo_r, hi_r] (multiples of `scale`), for each candidate (rows) and edge (columns).

    Within [lo_r - s/2, hi_r + s/2] the error is the rounding sawtooth v - s rint(v/s), whose square integrates
    to s^3 (m/12 + ((f - 1/2)^3 + 1/8)/3) with u = v/s + 1/2, m = floor(u), f = u - m; beyond, values clip to
    lo_r / hi_r and the error is (v - lo_r)^2 / (v - hi_r)^2. P is continuous; only its differences matter.
    """
    s = scale[:, None]
    low = (lo_r - scale / 2)[:, None]
    high = (hi_r + scale / 2)[:, None]
    e = edges[None, :]
    inside = np.clip(e, low, high)
    beyond = e - inside  # < 0 below low, > 0 above high, else 0
    u = inside / s
    u += 0.5
    m = np.floor(u)
    u -= m
    u -= 0.5  # f - 1/2
    result: F64Array = u * u * u
    result += 0.125
    result /= 3.0
    m /= 12.0
    result += m
    result *= s * s * s
    # clipped values: from the edge of the sawtooth region (where the clip error is s/2 in size, with g = +-s/2)
    # the integral of (g + d)^2 over d is d^3/3 + g d^2 + g^2 d, i.e. d^3/3 + (s/2) d|d| + (s^2/4) d
    result += beyond * beyond * beyond / 3.0
    result += (s / 2) * beyond * np.abs(beyond)
    result += (s * s / 4) * beyond
    return result


def quantization_errors(counts: F64Array, edges: F64Array, scale: F64Array, lo_r: F64Array,
                        hi_r: F64Array) -> F64Array:
    """Expected sum of squared errors over the histogram (values uniform within each bin) for each candidate."""
    nonzero = np.flatnonzero(counts)
    needed = np.union1d(nonzero, nonzero + 1)
    p = _error_antiderivative(edges[needed], scale, lo_r, hi_r)
    left = np.searchsorted(needed, nonzero)
    right = np.searchsorted(needed, nonzero + 1)
    widths = edges[nonzero + 1] - edges[nonzero]
    errors: F64Array = (p[:, right] - p[:, left]) @ (counts[nonzero] / widths)
    return errors


def _search(candidates: F64Array, errors_of: Callable[[F64Array], F64Array]) -> float:
    """Candidate with the least error: a coarse grid first, then every candidate within two coarse steps of its
    best one (ties go to the later, i.e. wider, candidate)."""
    def best(values: F64Array) -> tuple[float, float]:
        errs = errors_of(values)
        i = len(errs) - 1 - int(np.argmin(errs[::-1]))
        return float(values[i]), float(errs[i])

    n = candidates.size
    if n <= MSE_COARSE_CANDIDATES:
        return best(candidates)[0]
    stride = math.ceil(n / MSE_COARSE_CANDIDATES)
    coarse_idx = np.unique(np.append(np.arange(0, n, stride), n - 1))
    value, _ = best(candidates[coarse_idx])
    i = int(np.searchsorted(candidates, value))
    return best(candidates[max(0, i - 2 * stride):min(n, i + 2 * stride + 1)])[0]


def mse_symmetric_amax(counts: F64Array, width: float, top: float, qmin: int, qmax: int) -> float:
    """amax minimising the expected squared error of the symmetric quantizer over a histogram of |x| from 0."""
    cmin, cmax = calibration_range(qmin, qmax, True)
    zp = float(np.rint((cmin + cmax) / 2))
    edges = np.arange(counts.size + 1, dtype=np.float64) * width
    candidates = np.append(edges[(edges > 0) & (edges < top)], top)

    def errors(amax: F64Array) -> F64Array:
        scale = 2.0 * amax / (cmax - cmin)
        reach = np.minimum(zp - cmin, cmax - zp) * scale  # the narrower side of the code range
        return quantization_errors(counts, edges, scale, -reach, reach)

    return _search(candidates, errors)


def mse_asymmetric_range(counts: F64Array, first_edge: float, width: float, lo: float, hi: float,
                         qmin: int, qmax: int) -> tuple[float, float]:
    """(rmin, rmax) minimising the expected squared error of the affine quantizer, by coordinate descent."""
    cmin, cmax = calibration_range(qmin, qmax, False)
    edges = first_edge + np.arange(counts.size + 1, dtype=np.float64) * width
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    if lo0 == hi0:
        return lo, hi
    max_cands = np.append(edges[(edges > 0) & (edges < hi0)], hi0) if hi0 > 0 else np.zeros(1)
    min_cands = np.append(lo0, edges[(edges < 0) & (edges > lo0)]) if lo0 < 0 else np.zeros(1)

    def errors(rmin: F64Array, rmax: F64Array) -> F64Array:
        scale = (rmax - rmin) / (cmax - cmin)
        zp = np.clip(np.rint(cmin - rmin / scale), cmin, cmax)
        return quantization_errors(counts, edges, scale, (cmin - zp) * scale, (cmax - zp) * scale)

    def best_max(rmin: float) -> float:
        return _search(max_cands, lambda v: errors(np.full(v.shape, rmin), v))

    def best_min(rmax: float) -> float:
        return _search(min_cands, lambda v: errors(v, np.full(v.shape, rmax)))

    rmin, rmax = lo0, hi0
    for _ in range(MSE_ROUNDS):
        new_max = best_max(rmin)
        new_min = best_min(new_max)
        if (new_min, new_max) == (rmin, rmax):
            break
        rmin, rmax = new_min, new_max
    return rmin, rmax


# ---------------------------------------------------------------------- entropy
def one_sided(counts: F64Array, start: int, width: float, *, positive: bool) -> tuple[F64Array, float]:
    """The bins of one side of 0 as a histogram from 0 outwards (negative side mirrored), at most
    `counts.size` bins: merged by an integer factor when the side reaches further (exact, the grid is
    anchored at 0)."""
    nb = counts.size
    absolute = start + np.arange(nb, dtype=np.int64)
    keep = (absolute >= 0) if positive else (absolute < 0)
    keep &= counts > 0
    index = absolute[keep] if positive else -absolute[keep] - 1
    if index.size == 0:
        return np.zeros(1, dtype=np.float64), width
    k = max(1, math.ceil((int(index.max()) + 1) / nb))
    side: F64Array = np.bincount(index // k, weights=counts[keep], minlength=1).astype(np.float64)
    return side, width * k


def _kl_divergences(hist: F64Array, candidates: I64Array, nq: int) -> F64Array:
    """KL(P || Q) for keeping the first i bins, for each i (>= nq) in `candidates` (TensorRT's entropy search).

    P: the first i bins, the outliers beyond added to bin i - 1. Q: the first i bins merged into nq groups (bin j
    in group floor(j nq / i)), each group's count spread evenly over its non-empty bins. Both normalised, so
    KL = (sum p log p - sum p log q) / N + log(Q / N) with N = all values and Q = those in the first i bins; the
    sums come from prefix sums over the bins, O(nq) per candidate. Infinite when bin i - 1 is empty but
    outliers land in it (Q is 0 there).
    """
    total = float(hist.sum())
    positive = hist > 0
    hlogh = np.zeros_like(hist)
    hlogh[positive] = hist[positive] * np.log(hist[positive])
    cum = np.concatenate(([0.0], np.cumsum(hist)))
    cum_nonzero = np.concatenate(([0.0], np.cumsum(positive.astype(np.float64))))
    cum_hlogh = np.concatenate(([0.0], np.cumsum(hlogh)))
    i = candidates[:, None]
    bounds = (np.arange(nq + 1, dtype=np.int64)[None, :] * i + nq - 1) // nq  # group g: bins bounds[g]..bounds[g+1]
    sums = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    nonempty = cum_nonzero[bounds[:, 1:]] - cum_nonzero[bounds[:, :-1]]
    occupied = sums > 0
    per_bin = np.divide(sums, nonempty, out=np.ones_like(sums), where=occupied)
    sum_p_log_q = np.sum(np.where(occupied, sums * np.log(per_bin), 0.0), axis=1)
    last = candidates - 1
    kept = cum[candidates]
    tail = total - kept
    last_count = hist[last]
    p_last = last_count + tail
    sum_p_log_p = cum_hlogh[candidates] - hlogh[last] + np.where(p_last > 0, p_last, 1.0) * np.log(
        np.where(p_last > 0, p_last, 1.0))
    sum_p_log_q += tail * np.log(np.where(last_count > 0, per_bin[:, -1], 1.0))
    kl: F64Array = (sum_p_log_p - sum_p_log_q) / total + np.log(np.where(kept > 0, kept, total) / total)
    kl[(tail > 0) & (last_count <= 0)] = np.inf
    return kl


def entropy_threshold(counts: F64Array, width: float, top: float, num_quantized_bins: int) -> float:
    """Threshold (upper edge of the kept bins, at most `top`) minimising the KL divergence, over a histogram
    whose first bin starts at 0."""
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return top
    used = int(nonzero[-1]) + 1
    nq = max(1, num_quantized_bins)
    if used <= nq:
        return top
    hist = counts[:used]
    candidates = np.arange(nq, used + 1, dtype=np.int64)
    step = max(1, ENTROPY_CHUNK // (nq + 1))
    kl = np.concatenate([_kl_divergences(hist, candidates[i:i + step], nq) for i in range(0, candidates.size, step)])
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))
    return min(float(candidates[best]) * width, top)
