"""Query options: every route takes the options it declares and nothing else; the schema documents the same set."""

from __future__ import annotations

import pytest

from quantizers.api.options import Option, Options
from quantizers.exceptions import BadRequest
from quantizers.services import OPERATIONS
from tests.api.helpers import NPY, SPEC_DATA, assert_error, load_npy, npy_bytes, ok, snapshot, upload

# (method, path) of every route, the instance "default"
ROUTES = [
    ("get", "/"), ("get", "/readyz"), ("get", "/documentation"), ("get", "/instances"),
    ("post", "/instances/fresh"), ("delete", "/instances/default"),
    ("get", "/instances/default/config"), ("put", "/instances/default/config"),
    ("patch", "/instances/default/config"),
    *[("post", f"/instances/default/{action}") for action in (
        "quantize", "dequantize", "quantize_dequantize", "calibrate", "compute_params", "clear_cache", "reset_stats",
        "upload_numpy")],
    ("get", "/instances/default/stats"), ("get", "/instances/default/parameters"),
    ("post", "/instances/default/parameters"), ("get", "/instances/default/layer_params/conv1"),
]
# query options in the schema, per operation (format: DRF's renderer override, where there are several renderers)
ARRAY_OPTIONS = {"validate", "channel_dim", "layer_name", "format"}
DOCUMENTED = {
    ("/instances/{instance_id}/quantize", "post"): {"report", *ARRAY_OPTIONS},
    ("/instances/{instance_id}/dequantize", "post"): {"scale", "zero_point", *ARRAY_OPTIONS} - {"validate"},
    ("/instances/{instance_id}/quantize_dequantize", "post"): {"report", *ARRAY_OPTIONS},
    ("/instances/{instance_id}/upload_numpy", "post"): {"operation", *ARRAY_OPTIONS},
    ("/instances/{instance_id}/jobs", "post"): {"filename", "channel_dim"},
    ("/jobs", "get"): {"instance_id", "status", "page"},
    ("/jobs/{job_id}/report", "get"): {"format"},
    ("/jobs/{job_id}/artifact", "get"): {"shard", "format"},
}


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m.upper()} {p}" for m, p in ROUTES])
def test_an_unknown_query_parameter_is_400_on_every_route(api, method, path):
    before = snapshot(api, "default")
    response = api.client.generic(method.upper(), f"{path}?surprise=1", b"{}", content_type="application/json")
    assert_error(response, 400, code="request.invalid", detail="unknown query parameter: surprise", field="surprise")
    assert snapshot(api, "default") == before
    assert "fresh" not in ok(api.get("/instances"))


def test_an_unknown_query_parameter_is_400_on_a_json_route(api):
    assert_error(api.get("/instances/default/config?x=1"), 400, detail="unknown query parameter: x", field="x")
    # options of other routes are unknown here too
    assert_error(api.post("/instances/default/calibrate?channel_dim=0", {"data": [[[1.0, 2.0]]]}), 400,
                 field="channel_dim")


def test_an_unknown_query_parameter_is_400_with_a_binary_body(api):
    before = snapshot(api, "default")
    response = api.raw("post", "/instances/default/quantize?validate=false&chanel_dim=1", npy_bytes([[1.0, 2.0]]),
                       NPY)
    assert_error(response, 400, detail="unknown query parameter: chanel_dim", field="chanel_dim")
    assert snapshot(api, "default") == before


def test_an_unknown_query_parameter_is_400_on_upload(api):
    before = snapshot(api, "default")
    assert_error(upload("default", npy_bytes([[1.0, 2.0]]), query="operation=quantize&x=1"), 400, field="x")
    assert snapshot(api, "default") == before


@pytest.mark.parametrize("body", ["json", "npy"])
def test_operation_belongs_to_upload_only(api, body):
    """POST /instances/{id}/quantize?operation=dequantize was accepted, and quantized."""
    before = snapshot(api, "default")
    path = "/instances/default/quantize?operation=dequantize"
    response = (api.post(path, {"data": SPEC_DATA}) if body == "json"
                else api.raw("post", path, npy_bytes(SPEC_DATA), NPY))
    assert_error(response, 400, detail="unknown query parameter: operation", field="operation")
    assert snapshot(api, "default") == before


def test_format_only_where_there_are_several_renderers(api):
    assert_error(api.get("/instances/default/config?format=json"), 400, field="format")
    assert_error(api.get("/instances?format=json"), 400, field="format")
    response = api.post("/instances/default/quantize?format=npy", {"data": [[1.0, 2.0]]})
    assert response.status_code == 200
    assert load_npy(response.content).shape == (1, 2)


def test_binary_options_in_the_query_are_used(api):
    response = api.raw("post", "/instances/default/quantize?validate=false&layer_name=x&format=json",
                       npy_bytes([[1.0, 2.0]]), NPY)
    assert ok(response)["original_shape"] == [1, 2]


def test_the_schema_documents_the_declared_options(api):
    schema = api.get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            assert query == DOCUMENTED.get((path, method), set()), (path, method)
    upload_numpy = schema["paths"]["/instances/{instance_id}/upload_numpy"]["post"]
    operation = {p["name"]: p for p in upload_numpy["parameters"]}["operation"]["schema"]
    assert operation == {"type": "string", "enum": sorted(OPERATIONS), "default": "quantize"}


# ---------------------------------------------------------------------------- the parser itself
ALL_KINDS = Options(
    Option("b", "bool", default=True), Option("i", "int"), Option("s", "str"),
    Option("e", "enum", default="x", choices=("x", "y")), Option("f", "floats"), Option("n", "ints"),
)


def test_absent_options_take_their_default():
    assert ALL_KINDS.parse({}) == {"b": True, "i": None, "s": None, "e": "x", "f": None, "n": None}


@pytest.mark.parametrize(("query", "expected"), [
    ({"b": "false"}, {"b": False}), ({"b": "1"}, {"b": True}), ({"b": " TRUE "}, {"b": True}),
    ({"i": "-3"}, {"i": -3}), ({"i": ""}, {"i": None}), ({"s": "head"}, {"s": "head"}), ({"s": ""}, {"s": None}),
    ({"e": "y"}, {"e": "y"}), ({"f": "0.5,1e-3,-2"}, {"f": [0.5, 0.001, -2.0]}),
    ({"n": "0,-128,3"}, {"n": [0, -128, 3]}),
])
def test_each_kind_parses(query, expected):
    assert ALL_KINDS.parse(query).items() >= expected.items()


@pytest.mark.parametrize("query", [
    {"b": "yes"}, {"b": ""}, {"i": "1.5"}, {"i": "x"}, {"e": "X"}, {"e": ""}, {"f": "1,,2"}, {"f": "nan"},
    {"f": "inf"}, {"f": ""}, {"n": "1.5"}, {"n": "1, x"}, {"format": "json"}, {"B": "true"},
])
def test_malformed_or_unknown_options_are_refused(query):
    with pytest.raises(BadRequest) as refused:
        ALL_KINDS.parse(query)
    assert refused.value.field == next(iter(query))


def test_format_is_known_with_several_renderers():
    assert ALL_KINDS.parse({"format": "npy"}, renderers=3)["b"] is True
