"""JSON arrays -> numpy, checked in a few vectorised passes instead of per-element serializer fields.

Every rejection names what was wrong; nothing here can allocate more than the element limit allows, since the
size is checked from the row lengths before any array is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from django.conf import settings

from engine import InputError, LimitError

from .jsonmatrix import JsonMatrix

_NUMBER_TYPES = {int, float}
_INTEGER_TYPES = {int}

MSG_NOT_2D = "{field} must be a non-empty 2-D array: a list of rows, each a non-empty list of numbers"
MSG_RAGGED = "{field} must be rectangular: row {row} has {got} values, row 0 has {want}"
MSG_NOT_NUMBER = ("{field} must hold only numbers (no booleans, strings, nulls, lists or objects); "
                  "row {row} holds {kind}")
MSG_NOT_INTEGER = "{field} must hold only integers; row {row} holds {kind}"
MSG_RANGE = "{field} holds {count} value(s) outside the float32 range (they would round to infinity)"
MSG_NESTED = ("JSON bodies are 2-D: {field} row {row} holds lists, so the array has more than 2 dimensions; send "
              "N-D arrays (1-4 dimensions) as .npy (application/x-npy) or as application/octet-stream with X-Shape")
MSG_TOO_MANY = "{field} has {count} elements, more than QUANTIZER_MAX_ELEMENTS ({limit})"


def max_elements() -> int:
    return int(settings.QUANTIZER_MAX_ELEMENTS)


def parse_2d(value: Any, *, field: str = "data", integers: bool = False, budget: int | None = None
             ) -> npt.NDArray[Any]:
    """A rectangular 2-D list of numbers as float32 (or int64 when `integers` and all values are ints)."""
    if isinstance(value, JsonMatrix):
        return _from_rows(value, field=field, dtype=np.float64 if integers else np.float32, budget=budget)
    if not isinstance(value, list) or not value or not isinstance(value[0], list) or not value[0]:
        raise InputError(MSG_NOT_2D.format(field=field), field=field, code="input.shape")
    width = len(value[0])
    limit = max_elements() if budget is None else budget
    if len(value) * width > limit:
        raise LimitError(MSG_TOO_MANY.format(field=field, count=len(value) * width, limit=limit), field=field)
    allowed = _INTEGER_TYPES if integers else _NUMBER_TYPES
    for index, row in enumerate(value):
        if not isinstance(row, list):
            raise InputError(MSG_NOT_2D.format(field=field), field=field, code="input.shape")
        kinds = _check_row(row, index, width, field)
        if not kinds <= allowed:
            raise InputError(MSG_NOT_INTEGER.format(field=field, row=index, kind="floats"), field=field,
                             code="input.type")
    if integers:
        try:
            return np.array(value, dtype=np.int64)
        except OverflowError:
            # JSON integers beyond int64 (orjson parses up to 2**64 - 1): no type's code, and float64 holds them
            # well enough for the engine to say so (as the row-by-row path, which reads integers as float64, does).
            return np.array(value, dtype=np.float64)
    return _check_range(np.array(value, dtype=np.float64), field).astype(np.float32)


def _from_rows(matrix: JsonMatrix, *, field: str, dtype: Any, budget: int | None) -> npt.NDArray[Any]:
    """The same checks as parse_2d, one row at a time into a preallocated buffer."""
    if matrix.array is not None:
        return matrix.array.astype(dtype, copy=False)
    limit = max_elements() if budget is None else budget
    rows = matrix.row_lists()
    first = next(rows)
    width = len(first)
    if not width:
        raise InputError(MSG_NOT_2D.format(field=field), field=field, code="input.shape")
    if len(matrix) * width > limit:
        raise LimitError(MSG_TOO_MANY.format(field=field, count=len(matrix) * width, limit=limit), field=field)
    out = np.empty((len(matrix), width), dtype=dtype)
    with np.errstate(over="ignore"):
        for index, row in enumerate(_chain(first, rows)):
            if not matrix.numbers_only or len(row) != width:
                _check_row(row, index, width, field)
            out[index] = row
    return matrix.converted(_check_range(out, field))


def _check_row(row: list[Any], index: int, width: int, field: str) -> set[type]:
    """A row of the right length holding only numbers; returns the Python types it holds."""
    if len(row) != width:
        raise InputError(MSG_RAGGED.format(field=field, row=index, got=len(row), want=width), field=field,
                         code="input.shape")
    kinds = set(map(type, row))
    if list in kinds:
        raise InputError(MSG_NESTED.format(field=field, row=index), field=field, code="input.shape")
    if not kinds <= _NUMBER_TYPES:
        bad = sorted(k.__name__ for k in kinds - _NUMBER_TYPES)
        raise InputError(MSG_NOT_NUMBER.format(field=field, row=index, kind=", ".join(bad)), field=field,
                         code="input.type")
    return kinds


def _check_range(arr: npt.NDArray[Any], field: str) -> npt.NDArray[Any]:
    """Every value finite and rounding to a finite float32: 3.4028235e+38, the shortest text of the float32
    maximum (as numpy and these answers print it), is a little above it and rounds to it."""
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(arr if arr.dtype == np.float32 else arr.astype(np.float32))
    if not finite.all():
        raise InputError(MSG_RANGE.format(field=field, count=arr.size - int(np.count_nonzero(finite))), field=field,
                         code="input.range")
    return arr


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def parse_codes(value: Any, *, field: str = "data") -> npt.NDArray[Any]:
    """Dequantize input: integers, or floats (FLOAT16 / NONE instances dequantize float values)."""
    if isinstance(value, JsonMatrix):
        return parse_2d(value, field=field, integers=True)
    if isinstance(value, list) and value and isinstance(value[0], list) and value[0] and all(
        type(v) is int for v in value[0]
    ):
        try:
            return parse_2d(value, field=field, integers=True)
        except InputError as exc:
            if exc.code != "input.type":
                raise
    return parse_2d(value, field=field)


def parse_batches(value: Any, *, field: str = "data") -> list[npt.NDArray[np.float32]]:
    """Calibration data: a non-empty list of 2-D arrays (their shapes may differ)."""
    if not isinstance(value, list) or not value:
        raise InputError(f"{field} must be a non-empty list of 2-D arrays", field=field, code="input.shape")
    budget = max_elements()
    batches = []
    for index, batch in enumerate(value):
        arr = parse_2d(batch, field=f"{field}[{index}]", budget=budget)
        budget -= arr.size
        batches.append(arr)
    return batches
