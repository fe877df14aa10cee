"""GET /documentation, the OpenAPI schema at /api/schema/, Swagger UI at /api/docs/ and Redoc at /api/redoc/."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders

from tests.api.helpers import assert_error, ok

# Every route of the spec, as it writes it.
SPEC_ROUTES = {
    ("GET", "/"),
    ("GET", "/instances"),
    ("POST", "/instances/{instance_id}"),
    ("DELETE", "/instances/{instance_id}"),
    ("GET", "/instances/{instance_id}/config"),
    ("PUT", "/instances/{instance_id}/config"),
    ("POST", "/instances/{instance_id}/quantize"),
    ("POST", "/instances/{instance_id}/dequantize"),
    ("POST", "/instances/{instance_id}/quantize_dequantize"),
    ("POST", "/instances/{instance_id}/calibrate"),
    ("POST", "/instances/{instance_id}/compute_params"),
    ("GET", "/instances/{instance_id}/stats"),
    ("POST", "/instances/{instance_id}/clear_cache"),
    ("POST", "/instances/{instance_id}/reset_stats"),
    ("GET", "/instances/{instance_id}/parameters"),
    ("POST", "/instances/{instance_id}/parameters"),
    ("GET", "/instances/{instance_id}/layer_params/{layer_name}"),
    ("POST", "/instances/{instance_id}/upload_numpy"),
    ("GET", "/documentation"),
}
# The spec's data models, as OpenAPI components.
SPEC_COMPONENTS = {"QuantizerConfigModel", "QuantizationRequest", "DequantizationRequest", "CalibrationRequest",
                   "QuantizationParamsRequest", "ScaleZeroPointResponse", "QuantizationResponse", "StatsResponse"}


def schema(api):
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


@pytest.mark.parametrize("slash", ["", "/"])
def test_documentation_lists_every_spec_route(api, slash):
    body = ok(api.get(f"/documentation{slash}"))
    assert body["title"] == "Quantizer API"
    assert isinstance(body["version"], str)
    assert body["version"]
    listed = {(e["method"], e["path"]) for e in body["endpoints"]}
    assert listed >= SPEC_ROUTES, sorted(SPEC_ROUTES - listed)
    for endpoint in body["endpoints"]:
        assert set(endpoint) == {"path", "method", "summary", "tags"}
        assert endpoint["summary"], endpoint
    assert body["openapi_schema"] == "http://testserver/api/schema/"
    assert body["swagger_ui"] == "http://testserver/api/docs/"
    assert body["redoc"] == "http://testserver/api/redoc/"
    # the spec's curl examples, pointing at this server
    assert body["examples"]["quantize"].startswith('curl -X POST "http://testserver/instances/default/quantize"')
    assert '{"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]], "validate": true}' in body["examples"]["quantize"]
    assert '"http://testserver/instances/custom_quantizer"' in body["examples"]["create_instance"]


def test_documentation_is_read_only(api):
    assert_error(api.post("/documentation", {}), 405, code="http.method_not_allowed")


def test_openapi_schema_documents_the_spec(api):
    doc = schema(api)
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "Quantizer API"
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops
                  if method in ("get", "post", "put", "patch", "delete")}
    assert documented >= SPEC_ROUTES, sorted(SPEC_ROUTES - documented)
    components = set(doc["components"]["schemas"])
    assert components >= SPEC_COMPONENTS, sorted(SPEC_COMPONENTS - components)
    # the error body every route shares
    error = doc["components"]["schemas"]["ErrorResponse"]
    assert set(error["properties"]) == {"detail", "code", "field"}
    quantize = doc["paths"]["/instances/{instance_id}/quantize"]["post"]
    assert {"200", "400", "404", "409", "413", "415"} <= set(quantize["responses"])
    assert "application/x-npy" in quantize["responses"]["200"]["content"]
    delete = doc["paths"]["/instances/{instance_id}"]["delete"]
    assert {"200", "403", "404"} <= set(delete["responses"])
    create = doc["paths"]["/instances/{instance_id}"]["post"]
    assert "409" in create["responses"]
    upload = doc["paths"]["/instances/{instance_id}/upload_numpy"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {p["name"] for p in upload["parameters"]} >= {"operation", "validate", "channel_dim", "layer_name"}


def test_openapi_schema_enums_are_upper_case(api):
    components = schema(api)["components"]["schemas"]
    assert components["QuantizationTypeEnum"]["enum"] == ["INT8", "UINT8", "INT16", "FLOAT16", "NONE", "MIXED",
                                                           "INT4", "UINT4", "BFLOAT16", "FP8_E4M3", "FP8_E5M2"]
    assert set(components["QuantizationModeEnum"]["enum"]) == {
        "DYNAMIC", "DYNAMIC_PER_BATCH", "DYNAMIC_PER_CHANNEL", "STATIC", "CALIBRATED", "SYMMETRIC"}


@pytest.mark.parametrize("slash", ["", "/"])
def test_openapi_schema_as_yaml(api, slash):
    if not slash:
        response = api.get("/api/schema")
        assert_error(response, 404, code="route.not_found")  # beside the spec's routes: one spelling only
        return
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    doc = yaml.safe_load(response.content)
    assert doc["info"]["title"] == "Quantizer API"


def _local_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


def test_swagger_ui_is_served_from_local_static_files(api):
    response = api.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "/api/schema/" in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "Swagger UI must not load anything from a CDN"
    assets = _local_assets(html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset


def test_redoc_is_served_from_local_static_files(api):
    response = api.get("/api/redoc/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "/api/schema/" in html
    assets = _local_assets(html)
    assert any(a.endswith("redoc.standalone.js") for a in assets)
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset


def test_redoc_loads_nothing_from_a_cdn(api):
    html = api.get("/api/redoc/").content.decode()
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/", "/api/schema/"])
def test_documentation_pages_are_read_only(api, path):
    assert api.post(path, {}).status_code == 405
