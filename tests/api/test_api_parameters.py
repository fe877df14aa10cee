"""GET / POST /instances/{id}/parameters and GET /instances/{id}/layer_params/{layer}."""

from __future__ import annotations

import numpy as np
import pytest

from quantizers import registry
from tests.api.helpers import (
    F32,
    SPEC_DATA,
    assert_bits_equal,
    assert_error,
    create,
    ok,
    onnx_dequantize,
    onnx_quantize,
    snapshot,
)

SLASHES = pytest.mark.parametrize("slash", ["", "/"])
IMPORTED = {"message": "Parameters imported successfully"}
FRESH_DEFAULT = {
    "quantization_type": "INT8", "quantization_mode": "DYNAMIC", "num_bits": 8, "symmetric": False,
    "qmin": -128, "qmax": 127, "is_calibrated": False, "global_scale": None, "global_zero_point": None,
    "per_channel_scales": None, "per_channel_zero_points": None, "channel_dim": None, "layer_params": {},
    "calibration": None, "block_scales": None, "block_zero_points": None, "block_size": None, "block_axis": None,
}


def export(api, instance_id="default"):
    return ok(api.get(f"/instances/{instance_id}/parameters"))


def import_(api, parameters, instance_id="default"):
    return api.post(f"/instances/{instance_id}/parameters", {"parameters": parameters})


# ---------------------------------------------------------------------------- export
@SLASHES
def test_export_of_the_fresh_default_instance(api, slash):
    assert ok(api.get(f"/instances/default/parameters{slash}")) == FRESH_DEFAULT


@pytest.mark.parametrize(("config", "qmin", "qmax"), [
    ({"quantization_type": "UINT8"}, 0, 255),  # unsigned: 0 .. 2^8 - 1
    ({"quantization_type": "INT16"}, -32768, 32767),  # -2^15 .. 2^15 - 1
    ({"quantization_type": "INT8", "num_bits": 4}, -8, 7),  # -2^3 .. 2^3 - 1
    ({"quantization_type": "UINT8", "num_bits": 2}, 0, 3),
    ({"quantization_type": "FLOAT16"}, None, None),
    ({"quantization_type": "NONE"}, None, None),
])
def test_export_shows_the_integer_range_of_the_type(api, config, qmin, qmax):
    create(api, "ranged", config)
    exported = export(api, "ranged")
    assert (exported["qmin"], exported["qmax"]) == (qmin, qmax)
    assert exported["quantization_type"] == config["quantization_type"]


def test_export_of_an_unknown_instance_is_404(api):
    assert_error(api.get("/instances/ghost/parameters"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


# ---------------------------------------------------------------------------- import
@SLASHES
def test_import_answers_the_spec_message_and_is_exported(api, slash):
    response = api.post(f"/instances/default/parameters{slash}",
                        {"parameters": {"global_scale": 0.25, "global_zero_point": -3}})
    assert ok(response) == IMPORTED
    exported = export(api)
    assert (exported["global_scale"], exported["global_zero_point"]) == (0.25, -3)
    assert exported["is_calibrated"] is True
    assert exported["quantization_mode"] == "CALIBRATED"  # imported parameters freeze the instance
    assert ok(api.get("/instances/default/config"))["quantization_mode"] == "CALIBRATED"


def test_imported_parameters_are_used_by_a_fresh_worker(api):
    ok(import_(api, {"global_scale": 0.25, "global_zero_point": -3}))
    registry.active().clear()
    # rint(x / 0.25) - 3: 1.0 -> 1; -2.0 -> -11; 100 -> 397 -> 127 (clipped)
    data = [[1.0, -2.0, 100.0]]
    expected = onnx_quantize(data, F32(0.25), -3, -128, 127)
    assert expected.tolist() == [[1, -11, 127]]
    assert ok(api.post("/instances/default/quantize", {"data": data}))["data"] == expected.tolist()
    registry.active().clear()
    assert_bits_equal(ok(api.post("/instances/default/dequantize", {"data": [[1, -11, 127]]}))["data"],
                      onnx_dequantize([[1, -11, 127]], F32(0.25), -3))


def test_import_in_the_spec_original_format_with_float_zero_points(api):
    assert ok(import_(api, {"global_scale": 0.5, "global_zero_point": 4.0, "is_calibrated": True})) == IMPORTED
    assert export(api)["global_zero_point"] == 4
    assert ok(api.post("/instances/default/quantize", {"data": [[1.0]]}))["data"] == [[6]]  # rint(2) + 4


def test_import_per_channel_parameters(api):
    create(api, "pc", {"quantization_mode": "STATIC", "per_channel": True})
    params = {"per_channel_scales": [0.5, 0.25], "per_channel_zero_points": [1, -1], "channel_dim": 0}
    assert ok(import_(api, params, "pc")) == IMPORTED
    exported = export(api, "pc")
    assert (exported["per_channel_scales"], exported["per_channel_zero_points"], exported["channel_dim"]) == (
        [0.5, 0.25], [1, -1], 0)
    registry.active().clear()
    # row 0: rint(x / 0.5) + 1; row 1: rint(x / 0.25) - 1
    data = [[1.0, 2.0], [1.0, 2.0]]
    assert ok(api.post("/instances/pc/quantize", {"data": data}))["data"] == [[3, 5], [3, 7]]
    # along axis 1 instead: column 0 / 0.5 + 1, column 1 / 0.25 - 1
    assert ok(api.post("/instances/pc/quantize", {"data": data, "channel_dim": 1}))["data"] == [[3, 7], [3, 7]]
    assert_error(api.post("/instances/pc/quantize", {"data": [[1.0, 2.0, 3.0]], "channel_dim": 1}), 400,
                 field="channel_dim")  # 2 channels of parameters, 3 along axis 1


def test_import_layer_parameters(api):
    create(api, "layers", {"quantization_mode": "STATIC"})
    ok(import_(api, {"global_scale": 1.0, "global_zero_point": 0,
                     "layer_params": {"conv1": {"scale": 0.5, "zero_point": 2}}}, "layers"))
    assert export(api, "layers")["layer_params"] == {"conv1": {"scale": 0.5, "zero_point": 2, "channel_dim": None}}
    registry.active().clear()
    assert ok(api.post("/instances/layers/quantize", {"data": [[1.0]], "layer_name": "conv1"}))["data"] == [[4]]
    assert ok(api.post("/instances/layers/quantize", {"data": [[1.0]], "layer_name": "other"}))["data"] == [[1]]
    assert ok(api.post("/instances/layers/quantize", {"data": [[1.0]]}))["data"] == [[1]]


def test_export_then_import_into_another_instance_round_trips(api):
    ok(api.post("/instances/default/calibrate", {"data": [[[1.0, -2.0], [3.0, 0.5]]]}))
    exported = export(api)
    create(api, "twin", {})
    assert ok(import_(api, exported, "twin")) == IMPORTED
    assert export(api, "twin") == exported
    registry.active().clear()
    assert ok(api.post("/instances/twin/quantize", {"data": SPEC_DATA}))["data"] == ok(
        api.post("/instances/default/quantize", {"data": SPEC_DATA}))["data"]


def test_importing_null_parameters_clears_them(api):
    create(api, "st", {"quantization_mode": "STATIC"})
    ok(import_(api, {"global_scale": 0.5, "global_zero_point": 0}, "st"))
    ok(import_(api, {"global_scale": None, "global_zero_point": None}, "st"))
    exported = export(api, "st")
    assert exported["global_scale"] is None
    assert exported["is_calibrated"] is False
    assert_error(api.post("/instances/st/quantize", {"data": [[1.0]]}), 409, code="state.not_calibrated")


def test_import_of_a_unknown_instance_is_404(api):
    assert_error(import_(api, {"global_scale": 1.0, "global_zero_point": 0}, "ghost"), 404,
                 code="instance.not_found", detail="Quantizer instance ghost not found")


GARBAGE = [
    ({"global_scale": 0, "global_zero_point": 0}, "global"),
    ({"global_scale": -1.0, "global_zero_point": 0}, "global"),
    ({"global_scale": 1e-46, "global_zero_point": 0}, "global"),  # rounds to float32 zero
    ({"global_scale": 1e39, "global_zero_point": 0}, "global"),  # beyond float32
    ({"global_scale": "0.1", "global_zero_point": 0}, "global"),
    ({"global_scale": True, "global_zero_point": 0}, "global"),
    ({"global_scale": [0.1], "global_zero_point": 0}, "global"),
    ({"global_scale": {"v": 1}, "global_zero_point": 0}, "global"),
    ({"global_scale": 0.1, "global_zero_point": 128}, "global"),
    ({"global_scale": 0.1, "global_zero_point": -129}, "global"),
    ({"global_scale": 0.1, "global_zero_point": 1.5}, "global"),
    ({"global_scale": 0.1, "global_zero_point": "0"}, "global"),
    ({"global_scale": 0.1, "global_zero_point": False}, "global"),
    ({"global_scale": 0.1, "global_zero_point": 10**30}, "global"),
    ({"per_channel_scales": [0.1, 0.2], "per_channel_zero_points": [0]}, "per_channel"),
    ({"per_channel_scales": [], "per_channel_zero_points": []}, "per_channel"),
    ({"per_channel_scales": 0.1, "per_channel_zero_points": [0]}, "per_channel"),
    ({"per_channel_scales": [0.1], "per_channel_zero_points": [0], "channel_dim": 9}, "per_channel"),
    ({"per_channel_scales": [0.1], "per_channel_zero_points": [0], "channel_dim": "0"}, "per_channel"),
    ({"per_channel_scales": [0.1, -0.1], "per_channel_zero_points": [0, 0]}, "per_channel"),
    ({"per_channel_scales": [0.1]}, "per_channel"),
    ({"layer_params": []}, "layer_params"),
    ({"layer_params": {"l": 1}}, "layer_params"),
    ({"layer_params": {"l": {"scale": 0.1}}}, "layer_params"),
    ({"layer_params": {"l": {"scale": 0.1, "zero_point": 0, "extra": 1}}}, "layer_params"),
    ({"layer_params": {"l": {"scale": -1, "zero_point": 0}}}, "layer_params"),
    ({"layer_params": {"": {"scale": 0.1, "zero_point": 0}}}, "layer_params"),
    ({"is_calibrated": "yes"}, "is_calibrated"),
    ({"calibration": [1, 2]}, "calibration"),
    ({"quantization_type": "UINT8"}, "quantization_type"),
    ({"quantization_type": "INT9"}, "quantization_type"),
    ({"quantization_mode": "warp"}, "quantization_mode"),
    ({"num_bits": 4}, "num_bits"),
    ({"num_bits": True}, "num_bits"),
    ({"qmin": 0}, "qmin"),
    ({"qmax": 255}, "qmax"),
    ({"symmetric": True}, "symmetric"),
    ({"symmetric": "false"}, "symmetric"),
    ({"surprise": 1}, "surprise"),
]


# Garbage only when the instance holds no parameters yet (with parameters, these change one of them).
GARBAGE_WITHOUT_PARAMETERS = [
    ({"global_scale": 0.1}, "global_scale"),  # the two go together
    ({"global_zero_point": 0}, "global_scale"),
    ({"is_calibrated": True}, "is_calibrated"),  # no parameters to be calibrated with
]
CASES = [(p, f, "dynamic") for p, f in GARBAGE + GARBAGE_WITHOUT_PARAMETERS] + [(p, f, "static") for p, f in GARBAGE]


def _field_ok(body, expected):
    field = str(body.get("field", ""))
    return field == expected or field.startswith(expected)


@pytest.mark.parametrize(("parameters", "field", "setup"), CASES, ids=[f"{s}-{p!r}" for p, _, s in CASES])
def test_a_garbage_import_is_400_changes_nothing_and_the_instance_still_works(api, parameters, field, setup):
    if setup == "static":
        ok(api.put("/instances/default/config", {"quantization_mode": "STATIC"}))
        ok(import_(api, {"global_scale": 0.5, "global_zero_point": 1}))
    else:
        ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))
    before = snapshot(api, "default")
    body = assert_error(import_(api, parameters), 400)
    assert _field_ok(body, field), body
    assert snapshot(api, "default") == before
    registry.active().clear()
    assert snapshot(api, "default") == before
    # still works, with the parameters it had
    codes = ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))["data"]
    assert codes == ([[-1, 11]] if setup == "static" else [[-128, 126]])  # rint(x/0.5) + 1; or scale 6/255, zp -86


@pytest.mark.parametrize("body", [
    {"global_scale": 1.0, "global_zero_point": 0},  # not wrapped in {"parameters": ...}
    {"parameters": [1, 2]},
    {"parameters": "all"},
    {"parameters": None},
    {"parameters": {}, "extra": 1},
    {},
])
def test_an_import_body_must_wrap_an_object_in_parameters(api, body):
    before = snapshot(api, "default")
    assert_error(api.post("/instances/default/parameters", body), 400)
    assert snapshot(api, "default") == before


def test_an_import_of_an_empty_object_changes_nothing(api):
    before = snapshot(api, "default")
    assert ok(import_(api, {})) == IMPORTED
    assert snapshot(api, "default") == before


@pytest.mark.parametrize("qtype", ["FLOAT16", "NONE"])
def test_types_without_scale_refuse_scales(api, qtype):
    create(api, "float", {"quantization_type": qtype})
    before = snapshot(api, "float")
    assert_error(import_(api, {"global_scale": 0.1, "global_zero_point": 0}, "float"), 400)
    assert snapshot(api, "float") == before


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_parameters_take_get_and_post_only(api, method):
    response = getattr(api.client, method)("/instances/default/parameters", data="{}",
                                             content_type="application/json")
    assert_error(response, 405, code="http.method_not_allowed", detail=f'Method "{method.upper()}" not allowed.')


# ---------------------------------------------------------------------------- layer_params
@SLASHES
def test_layer_params_of_a_plain_instance(api, slash):
    body = ok(api.get(f"/instances/default/layer_params/conv1{slash}"))
    assert body == {"layer_name": "conv1", "quantization_type": "INT8", "num_bits": 8, "symmetric": False,
                    "per_channel": False, "skip": False, "reason": "instance settings", "qmin": -128, "qmax": 127,
                    "scale": None, "zero_point": None, "channel_dim": None, "parameters_source": "dynamic",
                    "used_by_quantize": False}


def test_layer_params_of_skipped_layers(api):
    create(api, "skips", {"skip_layers": ["head"], "quantize_bias": False})
    head = ok(api.get("/instances/skips/layer_params/head"))
    assert (head["skip"], head["quantization_type"], head["qmin"], head["parameters_source"]) == (
        True, "NONE", None, "identity")
    bias = ok(api.get("/instances/skips/layer_params/conv1.bias"))
    assert (bias["skip"], bias["quantization_type"]) == (True, "NONE")
    assert ok(api.get("/instances/skips/layer_params/conv1.weight"))["skip"] is False


def test_layer_params_of_mixed_precision_layers(api):
    create(api, "mixed", {"enable_mixed_precision": True, "mixed_precision_layers": ["attn"],
                          "custom_quantization_config": {"conv1": {"quantization_type": "int16"}}})
    conv = ok(api.get("/instances/mixed/layer_params/conv1"))
    assert (conv["quantization_type"], conv["num_bits"], conv["qmin"], conv["qmax"]) == ("INT16", 16, -32768, 32767)
    attn = ok(api.get("/instances/mixed/layer_params/attn"))
    assert (attn["quantization_type"], attn["qmin"], attn["parameters_source"]) == ("FLOAT16", None, "identity")
    # and the operations follow the plan: INT16 symmetric-free codes for conv1, a float16 cast for attn
    assert ok(api.post("/instances/mixed/quantize", {"data": [[0.0, 1.0]], "layer_name": "conv1"}))[
        "quantization_type"] == "INT16"
    body = ok(api.post("/instances/mixed/quantize", {"data": [[0.1]], "layer_name": "attn"}))
    assert body["quantization_type"] == "FLOAT16"
    assert_bits_equal(body["data"], [[np.float16(0.1)]])


def test_layer_params_show_imported_and_calibrated_parameters(api):
    create(api, "st", {"quantization_mode": "STATIC"})
    ok(import_(api, {"global_scale": 0.5, "global_zero_point": 1,
                     "layer_params": {"fc": {"scale": 0.25, "zero_point": -2}}}, "st"))
    registry.active().clear()
    fc = ok(api.get("/instances/st/layer_params/fc"))
    assert (fc["scale"], fc["zero_point"], fc["parameters_source"]) == (0.25, -2, "layer")
    other = ok(api.get("/instances/st/layer_params/other"))
    assert (other["scale"], other["zero_point"], other["parameters_source"]) == (0.5, 1, "global")
    assert fc["used_by_quantize"]
    assert other["used_by_quantize"]


def test_layer_params_report_the_per_channel_parameters_quantize_uses(api):
    """STATIC, per_channel false, imported per-channel parameters: quantize uses them and layer_params says so."""
    create(api, "pc", {"quantization_mode": "STATIC"})
    ok(import_(api, {"per_channel_scales": [0.1, 0.2], "per_channel_zero_points": [0, 0], "channel_dim": 0}, "pc"))
    assert ok(api.post("/instances/pc/quantize", {"data": [[1, 1], [1, 1]]}))["data"] == [[10, 10], [5, 5]]
    body = ok(api.get("/instances/pc/layer_params/any"))
    assert (body["scale"], body["zero_point"], body["channel_dim"], body["used_by_quantize"]) == (
        [0.1, 0.2], [0, 0], 0, True)


def test_layer_params_of_an_unknown_instance_is_404(api):
    assert_error(api.get("/instances/ghost/layer_params/conv1"), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


def test_layer_params_is_read_only(api):
    assert_error(api.post("/instances/default/layer_params/conv1", {}), 405, code="http.method_not_allowed")


def test_layer_params_needs_a_layer_name(api):
    assert_error(api.get("/instances/default/layer_params/"), 404, code="route.not_found")
