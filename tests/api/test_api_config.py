"""GET / PUT / PATCH /instances/{id}/config: round trip, replace vs change, validation, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from quantizers import registry
from tests.api.helpers import (
    CONFIG_FIELDS,
    SPEC_CODES,
    SPEC_DATA,
    SPEC_DEFAULTS,
    assert_error,
    create,
    ok,
    snapshot,
)

SLASHES = pytest.mark.parametrize("slash", ["", "/"])

RICH_CONFIG = {
    "quantization_type": "MIXED",
    "quantization_mode": "DYNAMIC_PER_CHANNEL",
    "num_bits": 6,
    "symmetric": True,
    "enable_cache": False,
    "cache_size": 7,
    "enable_mixed_precision": True,
    "per_channel": True,
    "buffer_size": 4096,
    "use_percentile": True,
    "min_percentile": 0.5,
    "max_percentile": 99.5,
    "error_on_nan": False,
    "error_on_inf": False,
    "optimize_memory": True,
    "enable_requantization": True,
    "requantization_threshold": 0.25,
    "outlier_threshold": 3.5,
    "skip_layers": ["head", "embed"],
    "quantize_bias": False,
    "quantize_weights_only": True,
    "mixed_precision_layers": ["attn.weight"],
    "custom_quantization_config": {"conv1.weight": {"quantization_type": "INT16", "num_bits": 12,
                                                    "symmetric": False, "per_channel": False}},
    "calibration_method": "ENTROPY",
    "qparams_rule": "torch",
    "group_size": 0,
}


def config_of(api, instance_id="default"):
    return ok(api.get(f"/instances/{instance_id}/config"))


# ---------------------------------------------------------------------------- GET
@SLASHES
def test_get_config_of_the_default_instance(api, slash):
    config = ok(api.get(f"/instances/default/config{slash}"))
    assert set(config) == CONFIG_FIELDS
    assert {k: config[k] for k in SPEC_DEFAULTS} == SPEC_DEFAULTS
    types = {"num_bits": int, "cache_size": int, "buffer_size": int, "min_percentile": float,
             "max_percentile": float, "requantization_threshold": float, "skip_layers": list,
             "mixed_precision_layers": list, "custom_quantization_config": dict, "quantization_type": str,
             "quantization_mode": str, "calibration_method": str, "qparams_rule": str, "group_size": int}
    for name, kind in types.items():
        assert type(config[name]) is kind, name
    for name in CONFIG_FIELDS - set(types) - {"outlier_threshold"}:
        assert type(config[name]) is bool, name
    assert config["outlier_threshold"] is None


@SLASHES
def test_get_config_of_an_unknown_instance_is_404(api, slash):
    assert_error(api.get(f"/instances/ghost/config{slash}"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


@pytest.mark.parametrize("method", ["post", "delete"])
def test_other_methods_on_config_are_405(api, method):
    response = getattr(api.client, method)("/instances/default/config", data="{}", content_type="application/json")
    assert_error(response, 405, code="http.method_not_allowed", detail=f'Method "{method.upper()}" not allowed.')


# ---------------------------------------------------------------------------- round trip
def test_what_get_returns_put_accepts_unchanged(api):
    create(api, "rich", RICH_CONFIG)
    first = config_of(api, "rich")
    assert first == RICH_CONFIG
    assert ok(api.put("/instances/rich/config", first)) == {
        "message": "Configuration for quantizer instance rich updated successfully"}
    assert config_of(api, "rich") == first
    assert ok(api.patch("/instances/rich/config", first))
    assert config_of(api, "rich") == first
    create(api, "copy", first)  # and the create route takes it too
    assert config_of(api, "copy") == first


def test_default_config_round_trips(api):
    config = config_of(api)
    ok(api.put("/instances/default/config", config))
    assert config_of(api) == config


# ---------------------------------------------------------------------------- PUT replaces, PATCH changes
@SLASHES
def test_put_replaces_the_whole_config_absent_fields_take_the_defaults(api, slash):
    create(api, "put_me", RICH_CONFIG)
    response = api.put(f"/instances/put_me/config{slash}", {"quantization_mode": "symmetric", "cache_size": 3})
    assert ok(response) == {"message": "Configuration for quantizer instance put_me updated successfully"}
    expected = config_of(api, "default")  # the defaults
    expected.update(quantization_mode="SYMMETRIC", cache_size=3)
    assert config_of(api, "put_me") == expected


def test_put_of_an_empty_object_restores_every_default(api):
    create(api, "reset_me", RICH_CONFIG)
    ok(api.put("/instances/reset_me/config", {}))
    assert config_of(api, "reset_me") == config_of(api, "default")


@SLASHES
def test_patch_changes_only_the_given_fields(api, slash):
    create(api, "patch_me", RICH_CONFIG)
    response = api.patch(f"/instances/patch_me/config{slash}", {"cache_size": 99, "skip_layers": []})
    assert ok(response) == {"message": "Configuration for quantizer instance patch_me updated successfully"}
    assert config_of(api, "patch_me") == {**RICH_CONFIG, "cache_size": 99, "skip_layers": []}


def test_patch_of_an_empty_object_changes_nothing(api):
    create(api, "same", RICH_CONFIG)
    ok(api.patch("/instances/same/config", {}))
    assert config_of(api, "same") == RICH_CONFIG


def test_lower_case_names_are_accepted_and_shown_upper_case(api):
    ok(api.put("/instances/default/config", {"quantization_type": "uint8", "quantization_mode": "dynamic_per_batch",
                                             "calibration_method": "moving_average"}))
    config = config_of(api)
    assert (config["quantization_type"], config["quantization_mode"], config["calibration_method"]) == (
        "UINT8", "DYNAMIC_PER_BATCH", "MOVING_AVERAGE")
    ok(api.patch("/instances/default/config", {"quantization_type": "int16"}))
    config = config_of(api)
    assert (config["quantization_type"], config["num_bits"]) == ("INT16", 16)


def test_a_type_without_bits_gets_the_width_of_the_type(api):
    ok(api.put("/instances/default/config", {"quantization_type": "INT16"}))
    assert config_of(api)["num_bits"] == 16
    ok(api.patch("/instances/default/config", {"quantization_type": "INT8"}))
    assert config_of(api)["num_bits"] == 8
    ok(api.patch("/instances/default/config", {"quantization_type": "INT16", "num_bits": 12}))
    assert config_of(api)["num_bits"] == 12


@pytest.mark.parametrize("method", ["put", "patch"])
def test_config_of_an_unknown_instance_is_404(api, method):
    response = getattr(api, method)("/instances/ghost/config", {"num_bits": 8})
    assert_error(response, 404, code="instance.not_found", detail="Quantizer instance ghost not found")
    assert ok(api.get("/instances")) == ["default"]


# ---------------------------------------------------------------------------- validation
BAD_CONFIGS = [
    ({"num_bits": 99}, "num_bits"),
    ({"num_bits": 1}, "num_bits"),
    ({"num_bits": 0}, "num_bits"),
    ({"num_bits": -8}, "num_bits"),
    ({"quantization_type": "INT16", "num_bits": 17}, "num_bits"),
    ({"num_bits": "8"}, "num_bits"),
    ({"num_bits": 8.5}, "num_bits"),
    ({"num_bits": True}, "num_bits"),
    ({"num_bits": None}, "num_bits"),
    ({"num_bits": [8]}, "num_bits"),
    ({"num_bits": 10**30}, "num_bits"),
    ({"quantization_type": "INT3"}, "quantization_type"),
    ({"quantization_type": ""}, "quantization_type"),
    ({"quantization_type": 8}, "quantization_type"),
    ({"quantization_type": None}, "quantization_type"),
    ({"quantization_type": ["INT8"]}, "quantization_type"),
    ({"quantization_mode": "turbo"}, "quantization_mode"),
    ({"quantization_mode": {"name": "STATIC"}}, "quantization_mode"),
    ({"calibration_method": "guess"}, "calibration_method"),
    ({"symmetric": "true"}, "symmetric"),
    ({"symmetric": 1}, "symmetric"),
    ({"symmetric": None}, "symmetric"),
    ({"enable_cache": "no"}, "enable_cache"),
    ({"per_channel": 0}, "per_channel"),
    ({"cache_size": -1}, "cache_size"),
    ({"cache_size": 1.5}, "cache_size"),
    ({"cache_size": "10"}, "cache_size"),
    ({"buffer_size": -1}, "buffer_size"),
    ({"min_percentile": 150}, "min_percentile"),
    ({"min_percentile": -1}, "min_percentile"),
    ({"max_percentile": 100.5}, "max_percentile"),
    ({"min_percentile": 60, "max_percentile": 50}, "min_percentile"),
    ({"min_percentile": "1"}, "min_percentile"),
    ({"requantization_threshold": 0}, "requantization_threshold"),
    ({"requantization_threshold": -0.5}, "requantization_threshold"),
    ({"outlier_threshold": -1}, "outlier_threshold"),
    ({"outlier_threshold": 0}, "outlier_threshold"),
    ({"outlier_threshold": "3"}, "outlier_threshold"),
    ({"skip_layers": "conv1"}, "skip_layers"),
    ({"skip_layers": [1, 2]}, "skip_layers"),
    ({"skip_layers": [""]}, "skip_layers"),
    ({"skip_layers": {"a": 1}}, "skip_layers"),
    ({"mixed_precision_layers": [None]}, "mixed_precision_layers"),
    ({"custom_quantization_config": []}, "custom_quantization_config"),
    ({"custom_quantization_config": {"l": 1}}, "custom_quantization_config"),
    ({"custom_quantization_config": {"l": {"bogus": 1}}}, "custom_quantization_config"),
    ({"custom_quantization_config": {"l": {"num_bits": 99}}}, "custom_quantization_config"),
    ({"custom_quantization_config": {"l": {"quantization_type": "MIXED"}}}, "custom_quantization_config"),
    ({"custom_quantization_config": {"l": {"quantization_type": "INT3"}}}, "custom_quantization_config"),
    ({"surprise": True}, "surprise"),
    ({"QUANTIZATION_TYPE": "INT8"}, "QUANTIZATION_TYPE"),
]


def _field_matches(body, field):
    # nested settings may name the nested path; the top-level field must be where it starts
    return body.get("field") == field or str(body.get("field", "")).startswith(f"{field}.")


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(("config", "field"), BAD_CONFIGS, ids=[repr(c) for c, _ in BAD_CONFIGS])
def test_a_bad_config_is_400_naming_the_field_and_changes_nothing(api, method, config, field):
    create(api, "victim", {"quantization_type": "INT8", "symmetric": True, "cache_size": 5})
    before = snapshot(api, "victim")
    body = assert_error(getattr(api, method)("/instances/victim/config", config), 400)
    assert _field_matches(body, field), body
    assert body["code"].startswith("config."), body
    assert snapshot(api, "victim") == before
    assert ok(api.post("/instances/victim/quantize", {"data": SPEC_DATA}))["data"] == SPEC_CODES


@pytest.mark.parametrize(("config", "field"), BAD_CONFIGS, ids=[repr(c) for c, _ in BAD_CONFIGS])
def test_a_bad_config_on_create_is_400_and_creates_nothing(api, config, field):
    body = assert_error(api.post("/instances/never", config), 400)
    assert _field_matches(body, field), body
    assert ok(api.get("/instances")) == ["default"]


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize("raw", [b"[]", b'"DYNAMIC"', b"1", b"null", b"{", b'{"num_bits": 8,}', b"{'num_bits': 8}"])
def test_a_body_that_is_not_a_json_object_is_400(api, method, raw):
    before = snapshot(api, "default")
    assert_error(api.raw(method, "/instances/default/config", raw, "application/json"), 400)
    assert snapshot(api, "default") == before


@pytest.mark.parametrize("method", ["put", "patch"])
def test_a_config_body_must_be_json(api, method):
    before = snapshot(api, "default")
    response = api.raw(method, "/instances/default/config", "num_bits=4", "application/x-www-form-urlencoded")
    assert_error(response, 415, code="http.unsupported_media_type")
    assert snapshot(api, "default") == before


# ---------------------------------------------------------------------------- effects and persistence
def test_a_config_change_takes_effect_on_the_next_request(api):
    # the default instance is asymmetric; the spec's codes need the symmetric parameters
    first = ok(api.post("/instances/default/quantize", {"data": SPEC_DATA}))["data"]
    assert first != SPEC_CODES
    ok(api.patch("/instances/default/config", {"symmetric": True}))
    assert ok(api.post("/instances/default/quantize", {"data": SPEC_DATA}))["data"] == SPEC_CODES


def test_a_config_change_through_another_worker_is_seen_by_a_worker_holding_the_old_engine(api, workers):
    with workers("a"):
        ok(api.post("/instances/default/quantize", {"data": SPEC_DATA}))  # worker a builds its engine object
    with workers("b"):
        ok(api.put("/instances/default/config", {"symmetric": True}))
    with workers("a"):
        assert ok(api.post("/instances/default/quantize", {"data": SPEC_DATA}))["data"] == SPEC_CODES
        assert config_of(api)["symmetric"] is True


def test_a_config_survives_a_worker_restart(api):
    create(api, "durable", RICH_CONFIG)
    ok(api.patch("/instances/durable/config", {"cache_size": 11}))
    registry.active().clear()
    assert config_of(api, "durable") == {**RICH_CONFIG, "cache_size": 11}


def test_changing_type_bits_or_symmetry_clears_stored_parameters(api):
    create(api, "params", {"quantization_mode": "STATIC"})
    ok(api.post("/instances/params/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 3}}))
    ok(api.patch("/instances/params/config", {"cache_size": 1}))  # unrelated: the parameters stay
    exported = ok(api.get("/instances/params/parameters"))
    assert (exported["global_scale"], exported["global_zero_point"]) == (0.5, 3)
    ok(api.put("/instances/params/config", {"quantization_mode": "STATIC", "num_bits": 4}))
    exported = ok(api.get("/instances/params/parameters"))
    assert exported["global_scale"] is None
    assert exported["is_calibrated"] is False
    # codes for another range would be wrong: STATIC without parameters is a conflict again
    assert_error(api.post("/instances/params/quantize", {"data": [[1.0]]}), 409, code="state.not_calibrated")


@pytest.mark.parametrize("change", [{"num_bits": 4}, {"quantization_type": "UINT8"}, {"symmetric": True},
                                    {"qparams_rule": "torch"}])
def test_a_range_change_also_forgets_the_latest_quantize_parameters(api, change):
    """The latest quantize of [-1, 5] used zp -86 on the INT8 range; after a change of type, bits or symmetry those
    parameters would give wrong values for the new codes, so a dynamic dequantize has nothing to use (409) until
    the next quantize."""
    ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))
    ok(api.patch("/instances/default/config", change))
    registry.active().clear()
    assert_error(api.post("/instances/default/dequantize", {"data": [[0, 1]]}), 409, code="state.not_calibrated")
    ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))
    assert ok(api.post("/instances/default/dequantize", {"data": [[0, 1]]}))["original_shape"] == [1, 2]


def test_an_unrelated_change_keeps_the_latest_quantize_parameters(api):
    codes = ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))["data"]
    ok(api.patch("/instances/default/config", {"cache_size": 3, "error_on_nan": False}))
    registry.active().clear()
    # scale float32(6/255), zp -86: (-128 + 86) * scale and (126 + 86) * scale
    scale = np.float32(np.float64(6.0) / 255.0)
    expected = ((np.asarray(codes, np.int64) + 86).astype(np.float32) * scale).astype(np.float32)
    got = np.asarray(ok(api.post("/instances/default/dequantize", {"data": codes}))["data"], np.float32)
    assert got.view(np.int32).tolist() == expected.view(np.int32).tolist()
