"""The error figures of a reconstruction (engine/figures.py) against numpy written here, for every layout the
kernel has (per tensor, long channel runs, short channel runs) and the NaN path."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from engine.figures import error_figures

F32 = np.float32


def reference(x: np.ndarray[Any, Any], q: np.ndarray[Any, Any], scale: Any, zp: Any, axis: int | None
              ) -> tuple[float | None, float, float]:
    shape = [1] * x.ndim
    if axis is not None:
        shape[axis] = -1
    s = F32(1) if scale is None else np.asarray(scale, F32).reshape(shape if axis is not None else ())
    z = F32(0) if zp is None else np.asarray(zp, F32).reshape(shape if axis is not None else ())
    xhat = ((q.astype(F32) - z) * s).astype(F32)  # the dequantize definition, in float32
    keep = np.isfinite(x)
    # d = x - x^ in float32, as documented (exact unless x^ was clipped far from x, as random codes are here)
    x64, e = x[keep].astype(np.float64), (x[keep] - xhat[keep]).astype(np.float64)
    signal, noise = float(np.sum(x64 * x64)), float(np.sum(e * e))
    sqnr = None if noise == 0 or signal == 0 else 10 * math.log10(signal / noise)
    return sqnr, float(np.max(np.abs(e))), math.sqrt(noise / x64.size)


def check(got: tuple[Any, Any, Any], want: tuple[Any, Any, Any]) -> None:
    assert got[1] == want[1]  # the largest error is one difference: exact
    assert got[2] == pytest.approx(want[2], rel=1e-12)
    if want[0] is None:
        assert got[0] is None
    else:
        assert got[0] == pytest.approx(want[0], abs=1e-9)


@pytest.mark.parametrize(("shape", "axis"), [((37, 101), None), ((40, 300), 0), ((6, 5, 70), 1), ((9, 13), 1),
                                             ((3, 4, 5), 2), ((1000,), None)])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
def test_codes_against_numpy(rng: np.random.Generator, shape: tuple[int, ...], axis: int | None, dtype: Any) -> None:
    x = (rng.standard_normal(shape) * 3).astype(F32)
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    channels = 1 if axis is None else shape[axis]
    scale = rng.uniform(1e-3, 0.1, channels).astype(F32)
    zp = rng.integers(info.min, info.max, channels).astype(F32)
    if axis is None:
        scale, zp = scale[:1], zp[:1]
    check(error_figures(x, q, scale, zp, axis, finite=True), reference(x, q, scale, zp, axis))


def test_values_without_parameters(rng: np.random.Generator) -> None:
    x = rng.standard_normal((50, 60)).astype(F32)
    half = x.astype(np.float16)
    check(error_figures(x, half, None, None, None, finite=True), reference(x, half, None, None, None))


def test_exact_reconstruction_and_zeros() -> None:
    x = np.array([[1.0, -2.0], [0.5, 4.0]], F32)
    assert error_figures(x, x, None, None, None, finite=True) == (None, 0.0, 0.0)
    zeros = np.zeros((3, 3), F32)
    assert error_figures(zeros, np.ones((3, 3), np.int8), np.ones(1, F32), np.ones(1, F32), None,
                         finite=True) == (None, 0.0, 0.0)


def test_non_finite_values_are_left_out(rng: np.random.Generator) -> None:
    x = rng.standard_normal((20, 30)).astype(F32)
    x[3, 4], x[7, 1] = np.nan, np.inf
    q = rng.integers(-128, 127, size=x.shape).astype(np.int8)
    scale, zp = np.full(20, 0.02, F32), np.zeros(20, F32)
    got = error_figures(x, q, scale, zp, 0, finite=False)
    want = reference(x, q, scale, zp, 0)
    assert got[1] == want[1]
    assert got[0] == pytest.approx(want[0], abs=1e-9)
    assert got[2] == pytest.approx(want[2], rel=1e-12)
