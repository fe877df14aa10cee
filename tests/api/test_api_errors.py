"""Errors: unknown routes, 405, malformed JSON, 415, 413 limits, 500, a database outage (503), and hostile input
on every body route.

Every answer is a JSON error body ({"detail", "code"} plus "field" where one field is at fault) and a refused
request changes nothing that is stored.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.db.backends import utils as db_utils
from django.test import Client

from quantizers import hotpath, registry, services
from tests.api.helpers import assert_error, create, ok, snapshot

MSG_TOO_LARGE = "The request body exceeds QUANTIZER_MAX_BODY_MB ({limit} MB)"

# (path, allowed methods) for every route
ROUTES = [
    ("/", {"GET"}),
    ("/instances", {"GET"}),
    ("/instances/default", {"POST", "DELETE"}),
    ("/instances/default/config", {"GET", "PUT", "PATCH"}),
    ("/instances/default/quantize", {"POST"}),
    ("/instances/default/dequantize", {"POST"}),
    ("/instances/default/quantize_dequantize", {"POST"}),
    ("/instances/default/calibrate", {"POST"}),
    ("/instances/default/compute_params", {"POST"}),
    ("/instances/default/stats", {"GET"}),
    ("/instances/default/clear_cache", {"POST"}),
    ("/instances/default/reset_stats", {"POST"}),
    ("/instances/default/parameters", {"GET", "POST"}),
    ("/instances/default/layer_params/conv1", {"GET"}),
    ("/instances/default/upload_numpy", {"POST"}),
    ("/documentation", {"GET"}),
]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NOT_ALLOWED = [(path, method) for path, allowed in ROUTES for method in METHODS if method not in allowed]
# each route spelt with and without a trailing slash (the root has one spelling)
NOT_ALLOWED_SPELLINGS = [(path, spelt, method) for path, method in NOT_ALLOWED
                         for spelt in ([path] if path == "/" else [path, path + "/"])]

# Routes taking a JSON body, with a valid body for each.
BODY_ROUTES = [
    ("post", "/instances/fresh", {"num_bits": 8}),
    ("put", "/instances/default/config", {"num_bits": 8}),
    ("patch", "/instances/default/config", {"num_bits": 8}),
    ("post", "/instances/default/quantize", {"data": [[1.0, 2.0]]}),
    ("post", "/instances/default/dequantize", {"data": [[1, 2]]}),
    ("post", "/instances/default/quantize_dequantize", {"data": [[1.0, 2.0]]}),
    ("post", "/instances/default/calibrate", {"data": [[[1.0, 2.0]]]}),
    ("post", "/instances/default/compute_params", {"data": [[1.0, 2.0]]}),
    ("post", "/instances/default/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 0}}),
]
BODY_IDS = [f"{m.upper()} {p}" for m, p, _ in BODY_ROUTES]


@pytest.fixture
def primed(api):
    """The default instance with a quantize behind it, so that dequantize is possible."""
    ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))
    return api


def state(api):
    stored = snapshot(api, "default")
    return {**stored, "fresh_exists": "fresh" in stored["instances"]}  # the listing the snapshot already holds


# ---------------------------------------------------------------------------- unknown routes
@pytest.mark.parametrize("path", [
    "/nope", "/instances/default/nope", "/instances/default/quantize/extra", "/instances/default/config/x",
    "/instances//quantize", "/instances/default//quantize", "/api/", "/api/schema/extra", "/INSTANCES",
    "/instances/default/Quantize", "/instances/default/quantize//", "/documentation/x", "/%00",
    "/instances/default/layer_params", "/favicon.ico",
])
@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_route_is_a_json_404(api, path, method):
    response = getattr(api.client, method.lower())(path)
    body = assert_error(response, 404, code="route.not_found")
    assert body["detail"].startswith("No such route: /")


def test_the_404_names_the_path(api):
    assert_error(api.get("/nope/deeper"), 404, detail="No such route: /nope/deeper", code="route.not_found")


@pytest.fixture
def csrf_client(db, settings):
    """As in production: DEBUG off, and a client that does not skip CSRF checks as the test client does."""
    settings.DEBUG = False
    return Client(enforce_csrf_checks=True)


@pytest.mark.parametrize("path", [
    "/instances/..%2F..%2Fetc%2Fpasswd", "/instances/%3Cscript%3E/x", "/nope", "/instances/default/quantize/extra",
    "/INSTANCES", "/static/nope", "/%00",
])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unknown_route_is_a_json_404_with_csrf_checks_on(csrf_client, path, method):
    """Unmatched POST, PUT ... answered 403 with Django's HTML CSRF page, before the catch-all JSON 404."""
    response = getattr(csrf_client, method)(path, b"{}", content_type="application/json")
    assert_error(response, 404, code="route.not_found")


def test_api_routes_answer_with_csrf_checks_on(csrf_client):
    assert csrf_client.post("/instances/default/quantize", {"data": [[1.0]]}, content_type="application/json"
                            ).status_code == 200


def test_a_csrf_failure_is_a_json_403():
    """No API view is CSRF-protected (DRF exempts its views; the catch-all is exempt): exercise the configured
    failure view through Django's middleware, on a protected view at an API path."""
    from django.middleware.csrf import CsrfViewMiddleware
    from django.test import RequestFactory

    def protected(request):  # a view without csrf_exempt
        raise AssertionError("the CSRF check must refuse the request first")

    request = RequestFactory().post("/instances/default/quantize", b"{}", content_type="application/json")
    response = CsrfViewMiddleware(protected).process_view(request, protected, (), {})
    assert_error(response, 403, code="request.csrf_failed", detail="CSRF verification failed: CSRF cookie not set.")


def test_the_admin_keeps_its_html_csrf_page(csrf_client):
    response = csrf_client.post("/admin/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


# ---------------------------------------------------------------------------- 405
@pytest.mark.parametrize(("path", "spelt", "method"), NOT_ALLOWED_SPELLINGS,
                         ids=[f"{m} {s}" for _, s, m in NOT_ALLOWED_SPELLINGS])
def test_a_method_a_route_does_not_take_is_a_json_405(api, path, spelt, method):
    before = state(api)
    response = api.client.generic(method, spelt, data=b"{}", content_type="application/json")
    assert_error(response, 405, code="http.method_not_allowed", detail=f'Method "{method}" not allowed.')
    allowed = {m.strip() for m in response["Allow"].split(",")}
    assert allowed - {"OPTIONS", "HEAD"} == next(a for p, a in ROUTES if p == path)
    assert state(api) == before


# Answers of different routes, interleaved (each route's Allow and Vary are built once, then reused): the routes
# that answer in several formats vary by Accept, the JSON-only ones do not.
ANSWERS = [("get", "/", None, False), ("post", "/instances/default/quantize", {"data": [[1.0, 2.0]]}, True),
           ("get", "/instances/default/config", None, False), ("get", "/instances/default/stats", None, False),
           ("post", "/instances/default/dequantize", {"data": [[1, 2]]}, True)]


def test_every_answer_carries_its_own_routes_allow_and_vary(api):
    allowed = dict(ROUTES)
    for _ in range(2):
        for method, path, body, varies in ANSWERS:
            response = getattr(api, method)(path, body) if body is not None else getattr(api, method)(path)
            assert response.status_code == 200, response.content
            assert {m.strip() for m in response["Allow"].split(",")} - {"HEAD"} == allowed[path] | {"OPTIONS"}
            assert (response.get("Vary") == "Accept") is varies, (path, response.get("Vary"))


# ---------------------------------------------------------------------------- malformed JSON
MALFORMED = [
    b'{"data": [[1, 2]]', b'{data: [[1]]}', b"{'data': [[1]]}", b'{"data": [[1, 2]]}}', b'{"data": [[1, 2]],}',
    b'{"data": [[1 2]]}', b'{"data": [[01]]}', b'{"data": [[1.]]}', b'{"data": [[.5]]}', b'{"data": [[+1]]}',
    b'{"data": [[0x10]]}', b'{"data": [[1]]} // comment', b'/* c */ {"data": [[1]]}', b"\xff\xfe{", b"\x00",
    b'{"data": [[NaN]]}', b'{"data": [[Infinity]]}', b'{"data": [[-Infinity]]}', b'{"data": [[nan]]}',
    b'{"data": [[1e309]]}', b'{"data": [[-1e309]]}', b'{"data": [[1' + b"0" * 400 + b"]]}",
    b'{"data": [["\xc3\x28"]]}', b'{"a": "\\ud800"}', b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000, b"{" + b" " * 100, b"tru", b"nul",
]


@pytest.mark.parametrize("raw", MALFORMED, ids=[repr(m[:30]) for m in MALFORMED])
@pytest.mark.parametrize(("method", "path", "valid"), BODY_ROUTES, ids=BODY_IDS)
def test_malformed_json_is_400_and_changes_nothing(primed, method, path, valid, raw):
    api = primed
    before = state(api)
    body = assert_error(api.raw(method, path, raw, "application/json"), 400)
    assert body["code"] in ("http.parse_error", "request.invalid", "validation.invalid", "input.range"), body
    assert state(api) == before
    assert api.raw(method, path, json.dumps(valid), "application/json").status_code == 200


@pytest.mark.parametrize(("method", "path", "valid"), BODY_ROUTES, ids=BODY_IDS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          "text/json", "application/jsonx", "image/png"])
def test_a_body_that_is_not_json_is_415(primed, method, path, valid, content_type):
    api = primed
    before = state(api)
    response = api.raw(method, path, json.dumps(valid), content_type)
    assert_error(response, 415, code="http.unsupported_media_type",
                 detail=f'Unsupported media type "{content_type}" in request.')
    assert state(api) == before


@pytest.mark.parametrize(("method", "path", "valid"), BODY_ROUTES, ids=BODY_IDS)
def test_json_with_a_charset_is_json(primed, method, path, valid):
    response = primed.raw(method, path, json.dumps(valid).encode(), "application/json; charset=utf-8")
    assert response.status_code == 200, response.content


DATA_BODY_ROUTES = [(m, p, v) for m, p, v in BODY_ROUTES if p != "/instances/fresh" and not p.endswith("/config")]


@pytest.mark.parametrize(("method", "path", "valid"), DATA_BODY_ROUTES,
                         ids=[f"{m.upper()} {p}" for m, p, _ in DATA_BODY_ROUTES])
def test_an_empty_body_is_400(primed, method, path, valid):
    api = primed
    before = state(api)
    assert_error(api.raw(method, path, b"", "application/json"), 400)
    assert state(api) == before


def test_an_empty_body_is_an_empty_configuration(api):
    """No body at all is taken as {} (DRF never hands an empty body to the parser): create takes the defaults,
    PUT restores them, PATCH changes nothing."""
    assert api.raw("post", "/instances/bare", b"", "application/json").status_code == 200
    assert ok(api.get("/instances/bare/config")) == ok(api.get("/instances/default/config"))
    ok(api.patch("/instances/bare/config", {"num_bits": 4}))
    assert api.raw("patch", "/instances/bare/config", b"", "application/json").status_code == 200
    assert ok(api.get("/instances/bare/config"))["num_bits"] == 4
    assert api.raw("put", "/instances/bare/config", b"", "application/json").status_code == 200
    assert ok(api.get("/instances/bare/config"))["num_bits"] == 8


# ---------------------------------------------------------------------------- 413: the body size limit
def _json_of_size(size: int) -> bytes:
    """A valid quantize body of exactly `size` bytes (padded with whitespace)."""
    body = b'{"data": [[1.0, 2.0]]}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.parametrize(("method", "path", "valid"), BODY_ROUTES, ids=BODY_IDS)
def test_a_body_over_the_limit_is_413_before_parsing(primed, settings, method, path, valid):
    api = primed
    settings.QUANTIZER_MAX_BODY_MB = 1
    before = state(api)
    over = b"{" + b"x" * (1024 * 1024)  # malformed too: 413 proves the limit comes before the parser
    assert_error(api.raw(method, path, over, "application/json"), 413, code="request.too_large",
                 detail=MSG_TOO_LARGE.format(limit=1))
    valid_but_big = json.dumps(valid).encode()
    valid_but_big = valid_but_big[:-1] + b" " * (1024 * 1024) + b"}"
    assert_error(api.raw(method, path, valid_but_big, "application/json"), 413, code="request.too_large")
    assert state(api) == before


def test_the_body_limit_is_inclusive(primed, settings):
    settings.QUANTIZER_MAX_BODY_MB = 1
    limit = 1024 * 1024
    assert ok(primed.raw("post", "/instances/default/quantize", _json_of_size(limit), "application/json"))
    assert_error(primed.raw("post", "/instances/default/quantize", _json_of_size(limit + 1), "application/json"),
                 413, code="request.too_large")


@pytest.mark.parametrize("limit", [2, 5])
def test_the_413_names_the_configured_limit(api, settings, limit):
    settings.QUANTIZER_MAX_BODY_MB = limit
    body = _json_of_size(limit * 1024 * 1024 + 10)
    assert_error(api.raw("post", "/instances/default/quantize", body, "application/json"), 413,
                 detail=MSG_TOO_LARGE.format(limit=limit), code="request.too_large")


def test_a_content_length_that_is_not_a_number_is_400(api):
    response = api.client.post("/instances/default/quantize", data=b'{"data": [[1]]}',
                               content_type="application/json", CONTENT_LENGTH="twelve")
    assert_error(response, 400, detail="Content-Length is not a number")


# ---------------------------------------------------------------------------- 413: the element limit
@pytest.mark.parametrize(("path", "body", "count", "field"), [
    ("quantize", {"data": [[1.0] * 4] * 2}, 8, "data"),
    ("quantize_dequantize", {"data": [[1.0]] * 7}, 7, "data"),
    ("compute_params", {"data": [[1.0] * 7]}, 7, "data"),
    ("dequantize", {"data": [[1] * 7]}, 7, "data"),
])
def test_an_array_over_the_element_limit_is_413(primed, settings, path, body, count, field):
    api = primed
    settings.QUANTIZER_MAX_ELEMENTS = 6
    before = state(api)
    assert_error(api.post(f"/instances/default/{path}", body), 413, code="input.too_large", field=field,
                 detail=f"data has {count} elements, more than QUANTIZER_MAX_ELEMENTS (6)")
    assert state(api) == before
    smaller = {"data": [row[:3] for row in body["data"][:2]]}  # at most 6 elements
    assert api.post(f"/instances/default/{path}", smaller).status_code == 200


def test_calibration_batches_share_the_element_limit(primed, settings):
    api = primed
    settings.QUANTIZER_MAX_ELEMENTS = 6
    before = state(api)
    body = assert_error(api.post("/instances/default/calibrate", {"data": [[[1.0] * 4], [[1.0] * 3]]}), 413,
                        code="input.too_large")
    assert body["field"].startswith("data")
    assert state(api) == before
    ok(api.post("/instances/default/calibrate", {"data": [[[1.0] * 3], [[2.0] * 3]]}))


def test_the_element_limit_is_inclusive(api, settings):
    settings.QUANTIZER_MAX_ELEMENTS = 6
    assert ok(api.post("/instances/default/quantize", {"data": [[1.0, 2.0, 3.0]] * 2}))["original_shape"] == [2, 3]


# ---------------------------------------------------------------------------- 500
def test_an_unexpected_error_is_a_json_500_without_internals(api, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(services, "instance_run", broken)
    response = Client(raise_request_exception=False).post("/instances/default/quantize", {"data": [[1.0]]},
                                                          content_type="application/json")
    assert_error(response, 500, detail="Internal server error", code="server.error")
    assert b"secret" not in response.content


# ---------------------------------------------------------------------------- database outage: 503
class DatabaseDown:
    """The database failing as in an outage: the driver (sqlite3 or psycopg) raises its OperationalError for the
    statements `failing` selects, through Django's error wrapper (which maps it and marks the connection broken),
    whether they run on Django's cursor or on the driver's (quantizers.hotpath)."""

    def __init__(self) -> None:
        self.failing: Callable[[str], bool] | None = None
        self.failed: list[str] = []

    def every_statement(self) -> None:
        self.failing = lambda sql: True

    def updates(self) -> None:
        self.failing = lambda sql: sql.lstrip().upper().startswith("UPDATE")

    def back(self) -> None:
        self.failing = None


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseDown]:
    down = DatabaseDown()
    original = db_utils.CursorWrapper._execute

    def fail(db, sql: str) -> None:
        if down.failing is not None and down.failing(sql):
            down.failed.append(sql)
            raise db.Database.OperationalError("server closed the connection unexpectedly")

    def execute(cursor, sql, params, *ignored):
        with cursor.db.wrap_database_errors:
            fail(cursor.db, sql)
        return original(cursor, sql, params, *ignored)

    class DriverCursor:
        """The driver's cursor, raising the driver's own error: the hot path must map it itself."""

        def __init__(self, db) -> None:
            self.db, self.cursor = db, original_cursor(db)

        def execute(self, sql, params):
            fail(self.db, sql)
            return self.cursor.execute(sql, params)

        def __getattr__(self, name):
            return getattr(self.cursor, name)

    original_cursor = hotpath._cursor
    monkeypatch.setattr(db_utils.CursorWrapper, "_execute", execute)
    monkeypatch.setattr(hotpath, "_cursor", DriverCursor)
    yield down
    down.back()


def assert_unavailable(response) -> None:
    assert_error(response, 503, code="database.unavailable", detail="The database is unavailable; retry shortly")
    assert response["Retry-After"] == "5"
    assert b"server closed" not in response.content


# Autocommit, as in production (no test transaction around the request): the counter UPDATE commits on its own.
AUTOCOMMIT = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@AUTOCOMMIT
@pytest.mark.parametrize("held", [False, True], ids=["fresh worker", "engine object held"])
@pytest.mark.parametrize("failing", ["every_statement", "updates"])
def test_a_database_outage_during_a_quantize_is_a_503_and_counts_nothing(database, failing, held):
    """A fresh worker reads the row first (a SELECT, then the UPDATE); one holding the instance's engine object
    runs the UPDATE alone (services.instance_run)."""
    api = Client()
    registry.active().clear()
    if held:
        ok(api.post("/instances/default/quantize", {"data": [[1.0, 2.0]]}, content_type="application/json"))
    before = ok(api.get("/instances/default/stats"))
    getattr(database, failing)()
    assert_unavailable(api.post("/instances/default/quantize", {"data": [[1.0, 2.0]]},
                                content_type="application/json"))
    assert any(sql.lstrip().upper().startswith("UPDATE") for sql in database.failed) == (failing == "updates"
                                                                                        or held)
    database.back()
    assert ok(api.get("/instances/default/stats")) == before
    # back by itself: the next quantize answers and counts
    assert ok(api.post("/instances/default/quantize", {"data": [[1.0, 2.0]]}, content_type="application/json"))
    assert ok(api.get("/instances/default/stats"))["quantize_calls"] == before["quantize_calls"] + 1


@AUTOCOMMIT
def test_the_counts_are_committed_before_the_200(monkeypatch):
    """The counter UPDATE runs in autocommit, outside any transaction: when the view returns, it is committed."""
    seen = []
    original = hotpath.record_stats

    def record_stats(*args, **kwargs):
        original(*args, **kwargs)
        seen.append((connection.get_autocommit(), connection.in_atomic_block))

    monkeypatch.setattr(hotpath, "record_stats", record_stats)
    ok(Client().post("/instances/default/quantize", {"data": [[1.0, 2.0]]}, content_type="application/json"))
    assert seen == [(True, False)]


@AUTOCOMMIT
def test_the_counts_statements_are_seen_by_query_logs_and_execute_wrappers():
    """The statements of a quantize run past Django's cursor, unless queries are logged (DEBUG, a test counting
    them) or an execute wrapper is installed: then they go through Django's cursor like any other, and count the
    same. A worker holding the instance's engine object runs one, the UPDATE, which checks the row's state."""
    api = Client()
    quantize = functools.partial(api.post, "/instances/default/quantize", {"data": [[1.0, 2.0]]},
                                 content_type="application/json")
    ok(quantize())  # this worker's engine object loaded (its full row read)
    before = ok(api.get("/instances/default/stats"))["quantize_calls"]
    # Logged as a test counting queries logs them (CaptureQueriesContext would reconnect Django's reset_queries
    # receiver, which quantizers.request_signals disconnects, for the tests after this one).
    connection.queries_log.clear()
    connection.force_debug_cursor = True
    try:
        ok(quantize())
    finally:
        connection.force_debug_cursor = False
    statements = [query["sql"].lstrip().split()[0].upper() for query in connection.queries_log]
    assert statements == ["UPDATE"]
    assert ok(api.get("/instances/default/stats"))["quantize_calls"] == before + 1

    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql.lstrip().split()[0].upper())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):  # instrumentation (tracing, query blockers) sees them too
        ok(quantize())
    assert seen == ["UPDATE"]
    assert ok(api.get("/instances/default/stats"))["quantize_calls"] == before + 2


@pytest.mark.parametrize("path", ["/instances", "/instances/default/stats", "/instances/default/config",
                                  "/instances/default/parameters"])
def test_a_database_outage_during_a_get_is_a_503(api, database, path):
    database.every_statement()
    assert_unavailable(api.get(path))
    database.back()
    ok(api.get(path))


def test_a_database_outage_during_the_token_lookup_is_a_503(api, database, settings):
    settings.QUANTIZER_REQUIRE_AUTH = True
    database.every_statement()
    assert_unavailable(api.get("/instances", HTTP_AUTHORIZATION="Token " + "0" * 40))
    assert database.failed  # the token lookup itself failed


class DatabaseReadingMiddleware:
    """A middleware that reads the database (as sessions do): an outage there happens outside any DRF view."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.contrib.auth.models import User

        User.objects.exists()
        return self.get_response(request)


def test_a_database_outage_outside_the_views_is_a_503(db, database, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.DatabaseReadingMiddleware"]
    client = Client(raise_request_exception=False)
    database.every_statement()
    for response in (client.get("/instances"), client.post("/instances/default/quantize", {"data": [[1.0]]},
                                                           content_type="application/json")):
        assert_unavailable(response)
        assert response["X-Request-ID"]
    database.back()
    ok(client.get("/instances"))


def test_other_database_errors_are_still_a_500(api, monkeypatch):
    from django.db import ProgrammingError

    def broken(**kwargs):
        raise ProgrammingError("relation does not exist")

    monkeypatch.setattr(services, "instance_run", broken)
    response = Client(raise_request_exception=False).post("/instances/default/quantize", {"data": [[1.0]]},
                                                          content_type="application/json")
    assert_error(response, 500, code="server.error")


# ---------------------------------------------------------------------------- hostile data, small and large bodies
FILLER = "1"  # a value every data route takes (an integer code, and a number)
WIDTH, ROWS = 100, 60  # 6000 values: large enough for the row-by-row fast path of the JSON parser


def _row(n: int, last: str | None = None) -> str:
    values = [FILLER] * n
    if last is not None:
        values[-1] = last
    return "[" + ", ".join(values) + "]"


def _body(rows: list[str], extra: str = "") -> bytes:
    return ("{" + extra + '"data": [' + ", ".join(rows) + "]}").encode()


def _small(last_row: str) -> bytes:
    return _body([_row(2), last_row])


def _big(last_row: str, extra: str = "") -> bytes:
    return _body([_row(WIDTH)] * (ROWS - 1) + [last_row], extra)


# a hostile value, placed last in a row of the right width
HOSTILE_VALUES = {
    "bool": "true", "false": "false", "string": '"1"', "null": "null", "object": '{"a": 1}', "list": "[1]",
    "empty list": "[]", "float32 overflow": "3.5e38", "negative overflow": "-3.5e38", "1e300": "1e300",
    "300 digits": "9" * 300, "escaped string": '"\\u005d\\u005d"', "nested brackets": "[[1]]",
}
# a hostile row in place of the last one
HOSTILE_ROWS = {"empty row": "[]", "number row": "7", "string row": '"row"', "null row": "null",
                "object row": '{"0": 1}', "nested row": "[[1, 1]]"}


def _hostile_bodies() -> dict[str, bytes]:
    out = {}
    for name, value in HOSTILE_VALUES.items():
        out[f"small, {name}"] = _small(_row(2, value))
        out[f"large, {name}"] = _big(_row(WIDTH, value))
    for name, row in HOSTILE_ROWS.items():
        out[f"small, {name}"] = _small(row)
        out[f"large, {name}"] = _big(row)
    out.update({
        "small, ragged": _body([_row(3), _row(2)]),
        "large, ragged shorter": _big(_row(WIDTH - 1)),
        "large, ragged longer": _big(_row(WIDTH + 1)),
        "small, 1-D": b'{"data": [1, 1]}',
        "large, 1-D": ('{"data": [' + ", ".join([FILLER] * (WIDTH * ROWS)) + "]}").encode(),
        "small, 3-D": b'{"data": [[[1, 1]]]}',
        "large, 3-D": ('{"data": [' + ", ".join([f"[{_row(WIDTH)}]"] * ROWS) + "]}").encode(),
        "empty": b'{"data": []}',
        "empty rows": b'{"data": [[], []]}',
        "scalar": b'{"data": 1}',
        "string": b'{"data": "[[1]]"}',
        "object": b'{"data": {"0": [1]}}',
        "null": b'{"data": null}',
        "large, data key nested first": _big(_row(WIDTH), extra='"meta": {"data": [[1]]}, '),
        "large, unknown field after data": _big(_row(WIDTH))[:-1] + b', "surprise": 1}',
        "large, trailing garbage": _big(_row(WIDTH)) + b" ]]",
        "large, second data key not an array": _big(_row(WIDTH))[:-1] + b', "data": "x"}',
    })
    return out


HOSTILE = _hostile_bodies()
DATA_ROUTES = ["quantize", "quantize_dequantize", "compute_params", "dequantize"]


@pytest.mark.parametrize("route", DATA_ROUTES)
@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_data_is_a_4xx_json_and_changes_nothing(primed, route, raw):
    api = primed
    before = state(api)
    response = api.raw("post", f"/instances/default/{route}", raw, "application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert_error(response, response.status_code)
    assert state(api) == before
    registry.active().clear()
    assert state(api) == before


@pytest.mark.parametrize("route", DATA_ROUTES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_the_same_bodies_with_an_ordinary_last_row_are_accepted(primed, route, size):
    """The refusals above are about the hostile row, not the shape of the body."""
    raw = _small(_row(2)) if size == "small" else _big(_row(WIDTH))
    body = ok(primed.raw("post", f"/instances/default/{route}", raw, "application/json"))
    if route == "compute_params":
        assert set(body) == {"scale", "zero_point"}
    else:
        assert body["original_shape"] == ([2, 2] if size == "small" else [ROWS, WIDTH])


@pytest.mark.parametrize("extra", ['"layer_name": "]], [[", ', '"layer_name": "\\"data\\": [[9]]", ',
                                   '"validate": false, ', '"layer_name": "[", '])
@pytest.mark.parametrize("route", ["quantize", "quantize_dequantize"])
def test_brackets_and_data_keys_inside_strings_do_not_confuse_the_parser(primed, route, extra):
    """The fast path locates the data by scanning the raw bytes; strings holding brackets or a quoted "data" key
    before it must not change the answer."""
    plain = ok(primed.raw("post", f"/instances/default/{route}", _big(_row(WIDTH, "5")), "application/json"))
    tricky = ok(primed.raw("post", f"/instances/default/{route}", _big(_row(WIDTH, "5"), extra=extra),
                           "application/json"))
    assert tricky == plain


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_calibration_batches_are_a_4xx_json_and_store_nothing(primed, raw):
    api = primed
    before = state(api)
    prefix = b'{"data": '
    wrapped = prefix + b"[" + raw[len(prefix):-1] + b"]}" if raw.startswith(prefix) and raw.endswith(b"]}") else raw
    response = api.raw("post", "/instances/default/calibrate", wrapped, "application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert_error(response, response.status_code)
    assert state(api) == before


@pytest.mark.parametrize("codes", [
    "[[18446744073709551615]]", "[[9223372036854775808]]", "[[-9223372036854775809]]", "[[1, 18446744073709551615]]",
    "[[" + "9" * 300 + "]]", "[[1e30]]",
])
def test_dequantize_of_enormous_integers_is_400(primed, codes):
    api = primed
    before = state(api)
    response = api.raw("post", "/instances/default/dequantize", f'{{"data": {codes}}}', "application/json")
    assert_error(response, 400, field="data")
    assert state(api) == before


def test_an_instance_still_works_after_every_kind_of_refusal(primed):
    api = primed
    for raw in list(HOSTILE.values())[::5] + MALFORMED[::5]:
        api.raw("post", "/instances/default/quantize", raw, "application/json")
    registry.active().clear()
    assert ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))["data"] == [[-128, 126]]


def test_a_created_instance_is_not_left_half_made_by_a_bad_body(api):
    create(api, "exists")
    assert_error(api.raw("post", "/instances/half", b'{"num_bits": 8', "application/json"), 400)
    assert "half" not in ok(api.get("/instances"))


def test_a_body_with_more_values_than_the_element_limit_is_refused_before_parsing(api, settings):
    settings.QUANTIZER_MAX_ELEMENTS = 1000
    # one row of 5000 values: the row-by-row parser would have to build the whole row to count it
    body = '{"data": [[' + ",".join(["1.5"] * 5000) + "]]}"
    response = api.raw("post", "/instances/default/quantize", body, "application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "input.too_large"
    assert "QUANTIZER_MAX_ELEMENTS" in response.json()["detail"]
    assert api.get("/instances/default/stats").json()["quantize_calls"] == 0


def test_json_matrices_are_limited_in_rows(api, monkeypatch):
    from quantizers.api import parsers

    monkeypatch.setattr(parsers, "MAX_JSON_ROWS", 100)
    body = '{"data": [' + ",".join(["[1.5]"] * 2000) + "]}"
    response = api.raw("post", "/instances/default/quantize", body, "application/json")
    assert response.status_code == 413
    assert "application/x-npy" in response.json()["detail"]


@pytest.mark.parametrize("size", ["small", "large"])
def test_the_depth_limit_counts_the_matrix_on_the_row_by_row_path_too(api, settings, size):
    """A large matrix of numbers is not walked byte by byte for the nesting (its outline is): its two levels still
    count. A body {"data": [[...]]} nests three deep."""
    raw = _small(_row(2)) if size == "small" else _big(_row(WIDTH))
    settings.QUANTIZER_MAX_JSON_DEPTH = 2
    response = api.raw("post", "/instances/default/quantize", raw, "application/json")
    assert_error(response, 400, detail="JSON nested deeper than QUANTIZER_MAX_JSON_DEPTH (2)")
    settings.QUANTIZER_MAX_JSON_DEPTH = 3
    assert ok(api.raw("post", "/instances/default/quantize", raw, "application/json"))["original_shape"] == (
        [2, 2] if size == "small" else [ROWS, WIDTH])
