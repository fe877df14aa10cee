"""What a request holds is freed with it: nothing long-lived keeps a reference to a finished request's view (and so
to its body, its parsed array and its answer), so that one collection frees them all."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from tests.api.helpers import NPY, npy_bytes

REQUESTS = {
    "quantize JSON": ("POST", "/instances/default/quantize", b'{"data": [[1.0, -2.0], [3.0, 0.5]]}',
                      "application/json"),
    "quantize_dequantize JSON": ("POST", "/instances/default/quantize_dequantize", b'{"data": [[1.0, -2.0]]}',
                                 "application/json"),
    "quantize .npy": ("POST", "/instances/default/quantize", npy_bytes([[1.0, -2.0], [3.0, 0.5]]), NPY),
    "stats": ("GET", "/instances/default/stats", b"", "application/json"),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_a_finished_requests_view_is_freed(api: Any, name: str) -> None:
    method, path, body, content_type = REQUESTS[name]
    response = api.client.generic(method, path, body, content_type=content_type)
    assert response.status_code == 200, response.content[:300]
    view = weakref.ref(response.renderer_context["view"])
    del response
    gc.collect()
    assert view() is None, [type(r).__name__ for r in gc.get_referrers(view())]


def test_a_json_body_is_not_kept_on_the_request(api: Any) -> None:
    """DRF reads the body of its own JSONParser through `request.body`, which keeps it on the Django request for as
    long as the request lives; the API's JSON parser reads the stream, so only the parsed values stay."""
    response = api.post("/instances/default/quantize", {"data": [[1.0, -2.0], [3.0, 0.5]]})
    assert response.status_code == 200, response.content[:300]
    assert "_body" not in vars(response.wsgi_request)
