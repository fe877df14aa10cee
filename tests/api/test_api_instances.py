"""Instances: health, list, create, delete; ids; the default instance; persistence across workers."""

from __future__ import annotations

import pytest

from quantizers import registry
from tests.api.helpers import (
    CONFIG_FIELDS,
    SPEC_CODES,
    SPEC_DATA,
    SPEC_DEFAULTS,
    SPEC_SYMMETRIC,
    assert_error,
    create,
    ok,
    snapshot,
)

MSG_INVALID_ID = "instance_id must be 1-64 characters of A-Z a-z 0-9 _ -"
SLASHES = pytest.mark.parametrize("slash", ["", "/"])


# ---------------------------------------------------------------------------- health
def test_health_check(api):
    assert ok(api.get("/")) == {"status": "healthy", "service": "Quantizer API"}


# ---------------------------------------------------------------------------- list
@SLASHES
def test_list_holds_the_default_instance_from_the_data_migration(api, slash):
    assert ok(api.get(f"/instances{slash}")) == ["default"]


@SLASHES
def test_list_shows_created_instances_as_strings(api, slash):
    create(api, "zeta")
    create(api, "Alpha-1")
    create(api, "m_2")
    listed = ok(api.get(f"/instances{slash}"))
    assert sorted(listed) == sorted(["default", "zeta", "Alpha-1", "m_2"])
    assert all(isinstance(i, str) for i in listed)


def test_list_rejects_other_methods(api):
    for method in ("post", "put", "patch", "delete"):
        response = getattr(api.client, method)("/instances", content_type="application/json", data="{}")
        assert_error(response, 405, code="http.method_not_allowed",
                     detail=f'Method "{method.upper()}" not allowed.')


# ---------------------------------------------------------------------------- create
@SLASHES
def test_create_answers_the_spec_message_and_stores_the_config(api, slash):
    response = api.post(f"/instances/custom_quantizer{slash}", SPEC_SYMMETRIC)
    assert ok(response) == {"message": "Quantizer instance custom_quantizer created successfully"}
    config = ok(api.get("/instances/custom_quantizer/config"))
    assert set(config) == CONFIG_FIELDS
    assert config["quantization_type"] == "INT8"
    assert config["num_bits"] == 8
    assert config["symmetric"] is True
    # fields the body did not give take the defaults
    assert config["quantization_mode"] == "DYNAMIC"
    assert config["enable_cache"] is True
    assert "custom_quantizer" in ok(api.get("/instances"))


def test_create_with_an_empty_object_takes_the_spec_defaults(api):
    create(api, "plain", {})
    config = ok(api.get("/instances/plain/config"))
    assert {k: config[k] for k in SPEC_DEFAULTS} == SPEC_DEFAULTS
    assert config == ok(api.get("/instances/default/config"))


@pytest.mark.parametrize(("given", "expected"), [
    ({"quantization_type": "int8"}, {"quantization_type": "INT8", "num_bits": 8}),
    ({"quantization_type": "uint8"}, {"quantization_type": "UINT8", "num_bits": 8}),
    ({"quantization_type": "int16"}, {"quantization_type": "INT16", "num_bits": 16}),
    ({"quantization_type": "float16"}, {"quantization_type": "FLOAT16"}),
    ({"quantization_type": "none"}, {"quantization_type": "NONE"}),
    ({"quantization_type": "mixed"}, {"quantization_type": "MIXED", "num_bits": 8}),
    ({"quantization_mode": "dynamic_per_batch"}, {"quantization_mode": "DYNAMIC_PER_BATCH"}),
    ({"quantization_mode": "dynamic_per_channel"}, {"quantization_mode": "DYNAMIC_PER_CHANNEL"}),
    ({"quantization_mode": "static"}, {"quantization_mode": "STATIC"}),
    ({"quantization_mode": "calibrated"}, {"quantization_mode": "CALIBRATED"}),
    ({"quantization_mode": "symmetric"}, {"quantization_mode": "SYMMETRIC"}),
    ({"quantization_type": "INT16", "quantization_mode": "STATIC"}, {"quantization_type": "INT16",
                                                                     "quantization_mode": "STATIC"}),
    ({"calibration_method": "percentile"}, {"calibration_method": "PERCENTILE"}),
])
def test_create_accepts_lower_case_names_and_answers_upper_case(api, given, expected):
    create(api, "named", given)
    config = ok(api.get("/instances/named/config"))
    assert {k: config[k] for k in expected} == expected


def test_create_of_an_existing_id_is_409_and_changes_nothing(api):
    create(api, "twice", {"num_bits": 4})
    before = snapshot(api, "twice")
    response = api.post("/instances/twice", {"quantization_type": "INT16"})
    assert_error(response, 409, code="instance.exists", detail="Quantizer instance twice already exists")
    assert snapshot(api, "twice") == before


@SLASHES
def test_the_default_instance_cannot_be_re_created(api, slash):
    before = snapshot(api, "default")
    response = api.post(f"/instances/default{slash}", {"quantization_type": "UINT8"})
    assert_error(response, 409, code="instance.exists", detail="Quantizer instance default already exists")
    assert snapshot(api, "default") == before


@pytest.mark.parametrize("bad_id", [
    "..", "%2e%2e", ".", "a.b", "a%20b", "a%00b", "a%0Ab", "abc%0A", "%0D", "a%09b", "a%7Fb", "%C3%A9t%C3%A9",
    "%E2%80%AE", "%EF%BC%A1",  # right-to-left override, full-width A
    "%D9%A1%D9%A2",  # Arabic-Indic digits: \d would take them, the id pattern must not
    "a" * 65, "a+b", "a%25b", "%22", "a;b", "a:b", "%5C", "%00",
])
@pytest.mark.parametrize("method", ["post", "delete"])
def test_an_invalid_id_is_400_and_creates_nothing(api, bad_id, method):
    before = ok(api.get("/instances"))
    response = api.post(f"/instances/{bad_id}", {}) if method == "post" else api.delete(f"/instances/{bad_id}")
    assert_error(response, 400, code="instance_id.invalid", detail=MSG_INVALID_ID, field="instance_id")
    assert ok(api.get("/instances")) == before


@pytest.mark.parametrize("route", ["config", "stats", "parameters", "layer_params/conv1"])
@pytest.mark.parametrize("bad_id", ["a%20b", "a" * 65, "%C3%A9"])
def test_an_invalid_id_is_400_on_every_route(api, bad_id, route):
    assert_error(api.get(f"/instances/{bad_id}/{route}"), 400, code="instance_id.invalid", detail=MSG_INVALID_ID,
                 field="instance_id")


@pytest.mark.parametrize("route", ["quantize", "dequantize", "quantize_dequantize", "calibrate", "compute_params",
                                   "clear_cache", "reset_stats", "parameters"])
def test_an_invalid_id_is_400_on_every_post_route(api, route):
    bad = "x" * 65
    assert_error(api.post(f"/instances/{bad}/{route}", {"data": [[1.0]]}), 400, code="instance_id.invalid",
                 field="instance_id")


def test_an_encoded_slash_is_not_part_of_an_id(api):
    # %2F decodes to "/" before routing: the path no longer names a route
    response = api.post("/instances/a%2Fb", {})
    assert_error(response, 404, code="route.not_found")
    assert ok(api.get("/instances")) == ["default"]


@pytest.mark.parametrize("good_id", ["a", "A", "0", "_", "-", "a" * 64, "Z9_-z", "custom_quantizer"])
def test_every_valid_id_shape_is_accepted(api, good_id):
    create(api, good_id)
    assert good_id in ok(api.get("/instances"))
    assert ok(api.get(f"/instances/{good_id}/config"))["quantization_type"] == "INT8"


@pytest.mark.parametrize(("body", "field"), [
    ({"num_bits": 99}, "num_bits"),
    ({"quantization_type": "INT3"}, "quantization_type"),
    ({"quantization_mode": "turbo"}, "quantization_mode"),
    ({"symmetric": "yes"}, "symmetric"),
    ({"surprise": 1}, "surprise"),
])
def test_create_with_a_bad_config_is_400_and_creates_nothing(api, body, field):
    response = api.post("/instances/bad_config", body)
    assert_error(response, 400, field=field)
    assert ok(api.get("/instances")) == ["default"]
    assert_error(api.get("/instances/bad_config/config"), 404)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"INT8"', b"17", b"null", b"true"])
def test_create_with_a_body_that_is_not_an_object_is_400(api, body):
    response = api.raw("post", "/instances/not_object", body, "application/json")
    assert_error(response, 400)
    assert ok(api.get("/instances")) == ["default"]


# ---------------------------------------------------------------------------- delete
@SLASHES
def test_delete_answers_the_spec_message_and_removes_everything(api, slash):
    create(api, "doomed", SPEC_SYMMETRIC)
    ok(api.post("/instances/doomed/quantize", {"data": SPEC_DATA}))
    response = api.delete(f"/instances/doomed{slash}")
    assert ok(response) == {"message": "Quantizer instance doomed deleted successfully"}
    assert ok(api.get("/instances")) == ["default"]
    for route in ("config", "stats", "parameters"):
        assert_error(api.get(f"/instances/doomed/{route}"), 404, code="instance.not_found",
                     detail="Quantizer instance doomed not found")
    assert_error(api.post("/instances/doomed/quantize", {"data": SPEC_DATA}), 404, code="instance.not_found")


@SLASHES
def test_delete_of_an_unknown_id_is_404(api, slash):
    assert_error(api.delete(f"/instances/ghost{slash}"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


def test_delete_twice_is_404_the_second_time(api):
    create(api, "once")
    ok(api.delete("/instances/once"))
    assert_error(api.delete("/instances/once"), 404, detail="Quantizer instance once not found")


@SLASHES
def test_the_default_instance_cannot_be_deleted(api, slash):
    before = snapshot(api, "default")
    response = api.delete(f"/instances/default{slash}")
    assert_error(response, 403, code="instance.default_protected",
                 detail="The default quantizer instance cannot be deleted")
    assert snapshot(api, "default") == before
    assert ok(api.post("/instances/default/quantize", {"data": [[0.0, 1.0]]}))["quantization_type"] == "INT8"


def test_get_and_put_on_an_instance_path_are_405(api):
    assert_error(api.get("/instances/default"), 405, code="http.method_not_allowed")
    assert_error(api.put("/instances/default", {}), 405, code="http.method_not_allowed")
    assert_error(api.patch("/instances/default", {}), 405, code="http.method_not_allowed")


# ---------------------------------------------------------------------------- re-create, other workers
def test_a_re_created_instance_never_reuses_the_old_engine_object(api):
    create(api, "phoenix", SPEC_SYMMETRIC)
    assert ok(api.post("/instances/phoenix/quantize", {"data": SPEC_DATA}))["data"] == SPEC_CODES
    ok(api.delete("/instances/phoenix"))
    # same id, now FLOAT16: this worker's registry must not hand out the INT8 engine object it built before
    create(api, "phoenix", {"quantization_type": "FLOAT16"})
    body = ok(api.post("/instances/phoenix/quantize", {"data": [[0.5, 2.0]]}))
    assert body == {"data": [[0.5, 2.0]], "quantization_type": "FLOAT16", "original_shape": [1, 2]}


def test_a_delete_through_another_worker_is_seen_here(api, workers):
    with workers("a"):
        create(api, "shared", SPEC_SYMMETRIC)
        ok(api.post("/instances/shared/quantize", {"data": SPEC_DATA}))  # worker a holds an engine object
    with workers("b"):
        ok(api.delete("/instances/shared"))
    with workers("a"):
        assert_error(api.post("/instances/shared/quantize", {"data": SPEC_DATA}), 404, code="instance.not_found")
        create(api, "shared", {"quantization_type": "UINT8"})
    with workers("b"):
        assert ok(api.get("/instances/shared/config"))["quantization_type"] == "UINT8"
    with workers("a"):  # still holding the engine object of the deleted INT8 instance: it must not be used
        body = ok(api.post("/instances/shared/quantize", {"data": SPEC_DATA}))
        assert body["quantization_type"] == "UINT8"
        assert min(min(row) for row in body["data"]) >= 0


def test_a_worker_holding_a_deleted_instances_engine_answers_404_before_the_datas_error(api, workers):
    """A quantize on an engine object this worker holds runs before any read of the row (services.instance_run):
    the data's error it raises must not come before the 404 of an instance deleted meanwhile."""
    with workers("a"):
        create(api, "gone", SPEC_SYMMETRIC)
        ok(api.post("/instances/gone/quantize", {"data": SPEC_DATA}))  # worker a holds an engine object
        assert_error(api.post("/instances/gone/quantize", {"data": SPEC_DATA, "channel_dim": 0}), 400,
                     code="input.channel_dim")
    with workers("b"):
        ok(api.delete("/instances/gone"))
    with workers("a"):
        assert_error(api.post("/instances/gone/quantize", {"data": SPEC_DATA, "channel_dim": 0}), 404,
                     code="instance.not_found")


def test_an_instance_created_in_one_worker_is_used_by_a_fresh_one(api):
    create(api, "persist", SPEC_SYMMETRIC)
    registry.active().clear()  # a newly started worker
    body = ok(api.post("/instances/persist/quantize", {"data": SPEC_DATA, "validate": True}))
    assert body == {"data": SPEC_CODES, "quantization_type": "INT8", "original_shape": [2, 3]}
