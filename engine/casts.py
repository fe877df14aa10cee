"""The float types' casts and the checks on codes handed to dequantize."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels
from .config import QuantizationType
from .errors import InputError

F32 = np.float32
FloatArray = npt.NDArray[np.float32]
HALF_MAX = float(np.finfo(np.float16).max)
_F32 = np.dtype(F32)


def as_float(x: npt.ArrayLike) -> FloatArray:
    if type(x) is np.ndarray and x.dtype is _F32 and x.ndim and x.size:  # already what it needs (the common case)
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise InputError("data must be numeric", field="data")
    if arr.ndim == 0 or arr.size == 0:
        raise InputError("data must be a non-empty array", field="data")
    with np.errstate(over="ignore"):  # float64 beyond the float32 range becomes +-inf (error_on_inf decides)
        return np.asarray(arr, dtype=F32)


def cast(x: FloatArray, qtype: QuantizationType, dequantize_after: bool) -> tuple[npt.NDArray[Any], int]:
    """FLOAT16: round to nearest even, saturating at +-65504 like the integer types saturate (a response never
    holds an infinity); NaN (when allowed) becomes 0. Returns the result and how many finite values overflowed.
    NONE: the identity."""
    if qtype is not QuantizationType.FLOAT16:
        return x.copy(), 0
    with np.errstate(over="ignore", invalid="ignore"):
        half = x.astype(np.float16)
    overflow = np.isinf(half)
    overflowed = int(np.count_nonzero(overflow & np.isfinite(x))) if overflow.any() else 0
    np.clip(half, -HALF_MAX, HALF_MAX, out=half)
    np.nan_to_num(half, copy=False, nan=0.0)
    return (half.astype(F32) if dequantize_after else half), overflowed


def uncast(x: FloatArray, qtype: QuantizationType) -> FloatArray:
    """Dequantize of a float type: FLOAT16 values back to float32 (refused outside the float16 range)."""
    if qtype is not QuantizationType.FLOAT16:
        return x.copy()
    outside = int(np.count_nonzero(np.abs(x) > HALF_MAX))
    if outside:
        raise InputError(f"{outside} value(s) are outside the float16 range (+-65504)", field="data",
                         code="input.code_out_of_range")
    return x.astype(np.float16).astype(F32)


def checked_codes(arr: npt.NDArray[Any], qmin: int, qmax: int) -> npt.NDArray[Any]:
    """Integer codes inside [qmin, qmax], in the narrowest integer dtype that holds them."""
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
        raise InputError("dequantize data must be integer codes", field="data")
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            if not np.isfinite(arr).all() or not np.array_equal(arr, np.rint(arr)):
                raise InputError("dequantize data must be integer codes", field="data")
    # Codes whose dtype cannot leave [qmin, qmax] (int8 codes of INT8, uint8 of UINT8) need no pass over them.
    within = arr.dtype.kind in "iu" and np.iinfo(arr.dtype).min >= qmin and np.iinfo(arr.dtype).max <= qmax
    lo, hi = (qmin, qmax) if within else kernels.minmax(arr)  # one pass for both
    if lo < qmin or hi > qmax:
        outside = int(np.count_nonzero((arr < qmin) | (arr > qmax)))
        raise InputError(f"{outside} code(s) are outside the type's range [{qmin}, {qmax}]", field="data",
                         code="input.code_out_of_range")
    small = np.int16 if qmin >= -32768 and qmax <= 32767 else np.int32
    return np.ascontiguousarray(arr, dtype=small if arr.dtype.kind == "f" or arr.dtype.itemsize > 2 else None)
