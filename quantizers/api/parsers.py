"""Request body parsers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, MultiPartParser

from engine import LimitError, NpyFormatError, decode_npy, raw_decode

from ..arrays import max_elements
from ..exceptions import BadRequest
from ..jsonmatrix import MAX_JSON_ROWS, locate_matrix, split_body
from ..request_body import read_body

# What the limits below look at: brackets, braces, quotes and backslashes (nesting), commas (values) and "[" (rows).
_NOT_COUNTED = bytes(b for b in range(256) if b not in b'[]{}"\\,')


MSG_NO_FILE = "a multipart form field 'file' holding a .npy file is required"


def occurrences(raw: bytes, chars: bytes, window: int = 1 << 18) -> list[int]:
    """How many times each of `chars` occurs in `raw`: vectorised comparisons over windows of 256 KiB, ~4x faster
    than bytes.count (a byte-at-a-time loop); whole-body comparisons would allocate the body's size again."""
    if len(raw) < window:
        return [raw.count(char) for char in chars]
    data = np.frombuffer(raw, np.uint8)
    counts = [0] * len(chars)
    for begin in range(0, len(data), window):
        part = data[begin : begin + window]
        for index, char in enumerate(chars):
            counts[index] += int(np.count_nonzero(part == char))
    return counts


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects, from the brackets and quotes alone (strings skipped), so that a
    pathological body is refused before the parser builds anything."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw.translate(None, _NOT_COUNTED + b","):
        if in_string:
            if escaped:
                escaped = False
            elif char == 0x5C:  # backslash
                escaped = True
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_FIELD_ALLOWANCE = 1024


def _read(stream: Any, parser_context: Any) -> bytes | bytearray:
    """The whole body, in one buffer (see request_body)."""
    request = parser_context.get("request") if parser_context else None
    return read_body(stream, getattr(request, "_request", None))


def _read_only(raw: bytes | bytearray) -> bytes | memoryview:
    """Arrays decoded over the body stay read-only, as over bytes (the engine never writes into a request's data)."""
    return memoryview(raw).toreadonly() if isinstance(raw, bytearray) else raw


class OrjsonParser(BaseParser):
    """Strict JSON (no NaN / Infinity tokens, integers within 64 bits) parsed by orjson, about 3x the stdlib.

    Not a subclass of DRF's JSONParser: DRF reads a JSONParser's body through `request.body`, which keeps it on
    the Django request (82 MB for a 2000x2000 array) for as long as the request lives; this parser reads the stream
    itself, so the body is freed once parsed."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            raw = _read(stream, parser_context)
            if not raw:
                raise ParseError("the request body is empty; a JSON object was expected")
            matrix = locate_matrix(raw)
            # The nesting is counted from the brackets and quotes (a few percent of the body); a matrix of numbers
            # only adds two levels, which its outline keeps, so its megabytes of digits need not be walked.
            outline = matrix.outline() if matrix is not None and matrix.numbers_only else raw
            limit = settings.QUANTIZER_MAX_JSON_DEPTH
            if json_depth(outline.translate(None, _NOT_COUNTED)) > limit:
                raise ParseError(f"JSON nested deeper than QUANTIZER_MAX_JSON_DEPTH ({limit})")
            commas, opening = occurrences(raw, b",[")
            # Every value but the first of an array follows a comma: more commas than the element limit (plus room
            # for the few other fields) means more values than may be parsed, so refuse before building any.
            elements = max_elements()
            if commas > elements + _FIELD_ALLOWANCE:
                raise LimitError(f"the body holds more than QUANTIZER_MAX_ELEMENTS ({elements}) values",
                                 field="QUANTIZER_MAX_ELEMENTS")
            # Every list costs ~60 bytes as a Python object: a tall, thin matrix parsed whole would take far more
            # memory than its values, so JSON matrices are limited in rows (binary bodies are not).
            if opening > MAX_JSON_ROWS + _FIELD_ALLOWANCE:
                raise LimitError(f"JSON arrays are limited to {MAX_JSON_ROWS} rows; send taller arrays as .npy "
                                 "(application/x-npy) or raw bytes (application/octet-stream)", field="data")
            split = split_body(raw, matrix) if matrix is not None else None
            if split is not None:
                rest, found = split
                rest["data"] = found
                return rest
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc}") from None


class NpyParser(BaseParser):
    """A `.npy` body, checked before anything is allocated and read zero-copy; never unpickled."""

    media_type = "application/x-npy"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = _read(stream, parser_context)
        return {"data": decode_npy(_read_only(raw), max_elements=max_elements())}


class OctetStreamParser(BaseParser):
    """Raw little-endian C-order bytes; the shape and dtype come from the X-Shape and X-Dtype headers."""

    media_type = "application/octet-stream"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        meta = parser_context["request"].META if parser_context else {}
        shape, dtype = meta.get("HTTP_X_SHAPE"), meta.get("HTTP_X_DTYPE", "float32")
        if not shape:
            raise NpyFormatError("an application/octet-stream body needs an X-Shape header, e.g. X-Shape: 2000,2000",
                                 field="X-Shape")
        raw = _read(stream, parser_context)
        return {"data": raw_decode(_read_only(raw), shape=shape, dtype=dtype, max_elements=max_elements())}


MSG_BAD_SPEC = "the spec part must be a JSON object (candidates and target): {error}"


class EvaluateUploadParser(MultiPartParser):
    """A multipart form with the array as a .npy `file` part and, optionally, a `spec` part (a form field or a file)
    holding the JSON object of candidates and target: {"data": array, "spec": object}."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        form = super().parse(stream, media_type, parser_context)
        upload = form.files.get("file")
        if upload is None:
            raise BadRequest(MSG_NO_FILE, field="file")
        if not (upload.name or "").lower().endswith(".npy"):
            raise BadRequest("the file must be a .npy file (name ending in .npy)", field="file")
        spec_file = form.files.get("spec")
        raw = spec_file.read() if spec_file is not None else form.data.get("spec", "{}")
        try:
            spec = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(MSG_BAD_SPEC.format(error=exc), field="spec") from None
        return {"data": decode_npy(upload.read(), max_elements=max_elements()), "spec": spec}


class NpyUploadParser(MultiPartParser):
    """A multipart form whose `file` field holds a .npy file (`curl -F file=@a.npy`), decoded as NpyParser does."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        upload = super().parse(stream, media_type, parser_context).files.get("file")
        if upload is None:
            raise BadRequest(MSG_NO_FILE, field="file")
        if not (upload.name or "").lower().endswith(".npy"):
            raise BadRequest("the file must be a .npy file (name ending in .npy)", field="file")
        return {"data": decode_npy(upload.read(), max_elements=max_elements())}
