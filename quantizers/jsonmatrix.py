"""Parse the `data` matrix of a JSON body row by row into a preallocated numpy buffer.

`orjson.loads` of a 2000x2000 body holds 4M Python floats (~400 MB peak with the array). Here the body is split
first: the top-level `"data": [[...], ...]` value is located, replaced by `null` for an ordinary parse of the
small remainder, and its rows are parsed one at a time (each with orjson) straight
into a float32 (or int64) buffer. Peak memory is the body plus the buffer.

Anything unusual (no such key, a key spelt with escapes, nesting other than 2-D, a huge number of short rows)
falls back to the ordinary parse, whose careful checks then give the precise error; so the fast path never
accepts what the careful path would refuse.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

_DATA_KEY = re.compile(rb'"data"\s*:\s*\[')
MAX_JSON_ROWS = 1 << 20  # a JSON matrix may have this many rows; taller arrays belong in a .npy body
MIN_FAST_ELEMENTS = 4096  # small bodies: the ordinary parse is as fast and simpler


class JsonMatrix:
    """A 2-D JSON array still in its raw bytes: rows located, not yet converted. Once converted (`converted`), it
    keeps the array and lets go of the body: the request's largest buffer is then freed before the answer is
    computed, and a second validation of the same body (a serializer's run to report another field's error)
    gets the array without parsing again."""

    def __init__(self, body: bytes | bytearray, start: int, end: int, rows: list[tuple[int, int]]) -> None:
        self._body = body
        self._span = start, end  # the matrix's outer brackets
        self._rows = rows
        self._count = len(rows)
        self.array: npt.NDArray[Any] | None = None
        # Every value a number: no string ('"'), no true / false / null / object (bytes above 'e', the largest a
        # number holds), no nested list (no '[' within a row, from the row spans). One memchr and one vectorised
        # maximum over the matrix (~2 ms at 1000x1000) spare a type check of every value (a third of the rows' time).
        self.numbers_only = (body.find(b'"', start, end) < 0
                             and int(np.frombuffer(body, np.uint8)[start:end].max()) <= ord("e"))

    def outline(self) -> bytes:
        """The body with the matrix written `[[]]`: with numbers only in the rows, it nests as deep as the body and
        holds everything else, so the body's limits can be checked on it instead of on every byte of the matrix."""
        start, end = self._span
        return self._body[:start] + b"[[]]" + self._body[end:]

    def rest(self) -> bytes:
        """The body with the matrix written `null`, for an ordinary parse of the other fields."""
        start, end = self._span
        return self._body[:start] + b"null" + self._body[end:]

    def row_lists(self) -> Any:
        body = self._body
        for start, end in self._rows:
            yield orjson.loads(body[start:end])  # a bytes slice parses faster than a memoryview one

    def converted(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        self.array = array
        self._body, self._rows = b"", []
        return array

    def __len__(self) -> int:
        return self._count


def locate_matrix(raw: bytes | bytearray) -> JsonMatrix | None:
    """The `"data": [[...], ...]` matrix of a body, rows located, or None when the fast path does not apply."""
    if len(raw) < MIN_FAST_ELEMENTS * 2:
        return None
    key = _DATA_KEY.search(raw)
    if key is None:
        return None
    start = key.end() - 1  # the outer '['
    found = _row_spans(raw, start + 1)
    if found is None:
        return None
    rows, end = found
    return JsonMatrix(raw, start, end, rows)


def split_body(raw: bytes | bytearray, matrix: JsonMatrix | None = None) -> tuple[dict[str, Any], JsonMatrix] | None:
    """(the body without its data, the data matrix), or None when the fast path does not apply; `matrix`, when
    given, is `locate_matrix(raw)`."""
    matrix = matrix or locate_matrix(raw)
    if matrix is None:
        return None
    try:
        rest = orjson.loads(matrix.rest())
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rest, dict) or "data" not in rest or rest["data"] is not None:
        return None
    return rest, matrix


_SPACE = b" \t\n\r"


def _row_spans(raw: bytes, pos: int) -> tuple[list[tuple[int, int]], int] | None:
    r"""(spans [start, end) of each `[...]` row from pos on, one past the matrix's closing `]`): rows separated by
    commas only and closed by a `]`, the first `]` (after optional whitespace) that follows a row's `]`, as the
    regex `]\s*]` found it before (walking the rows avoids a regex scan of the whole body: ~15 ms at 1000x1000)."""
    spans: list[tuple[int, int]] = []
    find = raw.find
    while True:
        open_at = find(b"[", pos)
        if open_at < 0 or raw[pos:open_at].strip(_SPACE) != (b"," if spans else b""):
            return None
        close_at = find(b"]", open_at)
        if close_at < 0 or find(b"[", open_at + 1, close_at) >= 0:
            return None
        spans.append((open_at, close_at + 1))
        if len(spans) > MAX_JSON_ROWS:
            return None
        pos = close_at + 1
        while raw[pos : pos + 1] in (b" ", b"\t", b"\n", b"\r"):
            pos += 1
        if raw[pos : pos + 1] == b"]":
            return spans, pos + 1
