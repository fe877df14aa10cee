"""Content negotiation with a shortcut for the common case."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

ANY = ("", "*/*")


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answering at once when the client states no preference (no Accept header, or `*/*`, and
    no `?format=`): the view's first renderer, as DRF would pick it. Parsing the Accept list and matching it
    against every renderer cost about a tenth of a small request (and an empty query string is not parsed to find
    no `format`)."""

    def select_renderer(self, request: Request, renderers: list[BaseRenderer], format_suffix: Any = None
                        ) -> tuple[BaseRenderer, str]:
        meta = request.META
        if (not format_suffix and meta.get("HTTP_ACCEPT", "") in ANY
                and (not meta.get("QUERY_STRING") or self.settings.URL_FORMAT_OVERRIDE not in request.query_params)):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)  # type: ignore[no-any-return]

    def select_parser(self, request: Request, parsers: list[BaseParser]) -> BaseParser | None:
        # DRF takes the first parser whose media type matches the request's: when the first one's is the request's
        # Content-Type as it is (application/json on the JSON routes), that is the one, without parsing either.
        if parsers and parsers[0].media_type == request.content_type:
            return parsers[0]
        return super().select_parser(request, parsers)  # type: ignore[no-any-return]
