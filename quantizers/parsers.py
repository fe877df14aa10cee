"""Request body parsers."""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class OrjsonParser(JSONParser):
    """Strict JSON (no NaN / Infinity tokens, integers within 64 bits) parsed by orjson, about 3x the stdlib."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            raw = stream.read() if stream is not None else b""
            if not raw:
                raise ParseError("the request body is empty; a JSON object was expected")
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON: {exc}") from None
