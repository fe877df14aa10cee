"""calibrate and compute_params: values against PyTorch's observers / ONNX formulas; compute_params changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from quantizers import registry
from quantizers.models import QuantizerInstance
from tests.api.helpers import (
    F32,
    RECORDS,
    REFERENCE,
    SPEC_DATA,
    SPEC_SYMMETRIC,
    assert_bits_equal,
    assert_error,
    create,
    ok,
    onnx_dequantize,
    onnx_qparams,
    onnx_quantize,
    representative,
    snapshot,
)

SLASHES = pytest.mark.parametrize("slash", ["", "/"])
OBSERVERS = REFERENCE["observers"]
BATCHES = [np.asarray(b, F32).reshape(OBSERVERS["batch_shape"]).tolist() for b in OBSERVERS["batches"]]


def torch_observer(prefix):
    matches = [r for r in OBSERVERS["results"] if r["observer"].startswith(prefix)]
    assert len(matches) == 1, prefix
    return matches[0]["steps"][-1]  # after all batches


# ---------------------------------------------------------------------------- calibrate
@SLASHES
def test_calibrate_answers_message_scale_and_zero_point(api, slash):
    """Default instance (asymmetric INT8, MINMAX) on batches [[1, 2]] and [[-3, 4, 5]] (shapes may differ):
    range [-3, 5]; scale = float32(8/255) = 0.03137255; in float32 -3/scale = -95.62499, so
    zp = rint(-128 + 95.62499) = rint(-32.375008) = -32."""
    scale = F32(np.float64(8.0) / 255.0)
    assert F32(-128) - F32(-3.0) / scale == F32(-32.375008)
    body = ok(api.post(f"/instances/default/calibrate{slash}", {"data": [[[1.0, 2.0]], [[-3.0, 4.0, 5.0]]]}))
    assert set(body) == {"message", "scale", "zero_point", "per_channel_scales", "per_channel_zero_points"}
    assert body["message"] == "Calibration successful"
    assert_bits_equal(body["scale"], scale)
    assert body["zero_point"] == -32
    assert body["per_channel_scales"] is None
    assert body["per_channel_zero_points"] is None

    config = ok(api.get("/instances/default/config"))
    assert config["quantization_mode"] == "CALIBRATED"
    exported = ok(api.get("/instances/default/parameters"))
    assert exported["is_calibrated"] is True
    assert_bits_equal(exported["global_scale"], scale)
    assert exported["global_zero_point"] == -32
    assert exported["quantization_mode"] == "CALIBRATED"
    assert exported["calibration"]["method"] == "MINMAX"
    assert (exported["calibration"]["batches"], exported["calibration"]["elements"]) == (2, 5)


def test_calibrated_parameters_are_used_by_a_fresh_worker(api):
    ok(api.post("/instances/default/calibrate", {"data": [[[1.0, 2.0]], [[-3.0, 4.0, 5.0]]]}))
    registry.active().clear()
    scale = F32(np.float64(8.0) / 255.0)
    # 10 is outside the calibrated range: rint(10/scale) - 32 = 319 - 32 = 287 -> clipped to 127
    data = [[-3.0, 0.0, 5.0, 10.0]]
    expected = onnx_quantize(data, scale, -32, -128, 127)
    assert expected.tolist() == [[-128, -32, 127, 127]]
    body = ok(api.post("/instances/default/quantize", {"data": data}))
    assert body["data"] == expected.tolist()
    stats = ok(api.get("/instances/default/stats"))
    assert stats["clipped_values"] == 1
    assert_bits_equal(stats["last_scale"], scale)
    registry.active().clear()
    assert_bits_equal(ok(api.post("/instances/default/dequantize", {"data": body["data"]}))["data"],
                      onnx_dequantize(expected, scale, -32))
    # the calibrated parameters do not follow the data: another range quantizes with the same ones
    assert ok(api.post("/instances/default/quantize", {"data": [[0.0, 100.0]]}))["data"] == [[-32, 127]]


def test_minmax_calibration_follows_torch_min_max_observer(api):
    """Five batches of the observers' reference: the range is torch MinMaxObserver's, the parameters those the
    ONNX formulas give for it (UINT8 asymmetric)."""
    step = torch_observer("MinMaxObserver(quint8, per_tensor_affine)")
    create(api, "u8", {"quantization_type": "UINT8", "qparams_rule": "ort_tooling"})
    body = ok(api.post("/instances/u8/calibrate", {"data": BATCHES}))
    scale, zp = onnx_qparams(F32(step["min_val"]), F32(step["max_val"]), 0, 255, False)
    assert_bits_equal(body["scale"], scale)
    assert body["zero_point"] == int(zp)
    cal = ok(api.get("/instances/u8/parameters"))["calibration"]
    assert_bits_equal(cal["range_min"], step["min_val"])
    assert_bits_equal(cal["range_max"], step["max_val"])
    assert (cal["batches"], cal["elements"]) == (5, 5 * 64)
    registry.active().clear()
    x = np.asarray(BATCHES[0], F32)
    assert ok(api.post("/instances/u8/quantize", {"data": BATCHES[0]}))["data"] == onnx_quantize(
        x, scale, zp, 0, 255).tolist()


def test_symmetric_calibration_uses_amax_over_qmax(api):
    step = torch_observer("MinMaxObserver(qint8, per_tensor_symmetric)")
    create(api, "sym", SPEC_SYMMETRIC)
    body = ok(api.post("/instances/sym/calibrate", {"data": BATCHES}))
    amax = max(-F32(step["min_val"]), F32(step["max_val"]))
    assert_bits_equal(body["scale"], F32(np.float64(amax) / 127))  # ONNX: amax / qmax, not torch's amax / 127.5
    assert body["zero_point"] == 0


@pytest.mark.parametrize("channel_dim", [0, None])
def test_per_channel_calibration_follows_torch_per_channel_observer(api, channel_dim):
    step = torch_observer("PerChannelMinMaxObserver(ch_axis=0, quint8, per_channel_affine)")
    create(api, "pc", {"quantization_type": "UINT8", "per_channel": True, "qparams_rule": "ort_tooling"})
    body = {"data": BATCHES} if channel_dim is None else {"data": BATCHES, "channel_dim": channel_dim}
    answer = ok(api.post("/instances/pc/calibrate", body))
    lo, hi = np.asarray(step["min_val"], F32), np.asarray(step["max_val"], F32)
    scales, zps = onnx_qparams(lo, hi, 0, 255, False)
    assert_bits_equal(answer["per_channel_scales"], scales)
    assert answer["per_channel_zero_points"] == zps.tolist()
    g_scale, g_zp = onnx_qparams(lo.min(), hi.max(), 0, 255, False)
    assert_bits_equal(answer["scale"], g_scale)
    assert answer["zero_point"] == int(g_zp)
    exported = ok(api.get("/instances/pc/parameters"))
    assert exported["channel_dim"] == 0
    assert_bits_equal(exported["per_channel_scales"], scales)
    registry.active().clear()
    x = np.asarray(BATCHES[2], F32)
    q = ok(api.post("/instances/pc/quantize", {"data": BATCHES[2]}))["data"]
    assert q == onnx_quantize(x, scales.reshape(-1, 1), zps.reshape(-1, 1), 0, 255).tolist()


def test_per_channel_calibration_along_axis_one(api):
    """channel_dim 1 of [[1, -2], [3, 0.5]]: column 0 range [0, 3] (0 included), column 1 [-2, 0.5]; INT8 symmetric:
    scales 3/127 and 2/127."""
    create(api, "pc1", {**SPEC_SYMMETRIC, "per_channel": True})
    body = ok(api.post("/instances/pc1/calibrate", {"data": [[[1.0, -2.0], [3.0, 0.5]]], "channel_dim": 1}))
    assert_bits_equal(body["per_channel_scales"], [F32(3.0 / 127), F32(2.0 / 127)])
    assert body["per_channel_zero_points"] == [0, 0]
    assert ok(api.get("/instances/pc1/parameters"))["channel_dim"] == 1


def test_moving_average_calibration_follows_torch(api):
    step = torch_observer("MovingAverageMinMaxObserver(c=0.01, quint8, affine)")
    create(api, "ema", {"quantization_type": "UINT8", "calibration_method": "MOVING_AVERAGE"})
    ok(api.post("/instances/ema/calibrate", {"data": BATCHES}))
    cal = ok(api.get("/instances/ema/parameters"))["calibration"]
    assert cal["method"] == "MOVING_AVERAGE"
    assert cal["range_min"] == pytest.approx(step["min_val"], rel=1e-6)
    assert cal["range_max"] == pytest.approx(step["max_val"], rel=1e-6)


@pytest.mark.parametrize("method", ["PERCENTILE", "MSE", "ENTROPY"])
def test_histogram_methods_calibrate_within_the_data_range(api, method):
    create(api, "hist", {"quantization_type": "INT8", "calibration_method": method.lower()})
    body = ok(api.post("/instances/hist/calibrate", {"data": BATCHES}))
    full_scale, _ = onnx_qparams(F32(-12.105754), F32(9.809858), -128, 127, False)
    assert 0 < body["scale"] <= float(full_scale) * (1 + 1e-6)
    assert -128 <= body["zero_point"] <= 127
    cal = ok(api.get("/instances/hist/parameters"))["calibration"]
    assert cal["method"] == method
    assert -12.105754 - 1e-5 <= cal["range_min"] <= 0 <= cal["range_max"] <= 9.809858 + 1e-5


def test_calibration_through_one_worker_is_used_by_another_holding_an_old_engine(api, workers):
    with workers("a"):
        ok(api.post("/instances/default/quantize", {"data": [[0.0, 1.0]]}))
    with workers("b"):
        ok(api.post("/instances/default/calibrate", {"data": [[[1.0, 2.0]], [[-3.0, 4.0, 5.0]]]}))
    with workers("a"):
        assert ok(api.post("/instances/default/quantize", {"data": [[0.0, 100.0]]}))["data"] == [[-32, 127]]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"data": []}, 400, "data"),
    ({"data": [[]]}, 400, None),
    ({"data": [[[]]]}, 400, None),
    ({"data": [[1.0, 2.0]]}, 400, None),  # a 2-D array is one batch too few dimensions deep
    ({"data": [[[[1.0]]]]}, 400, None),
    ({"data": [[[1.0, 2.0]], [[1.0], [2.0, 3.0]]]}, 400, None),  # the second batch is ragged
    ({"data": [[[1.0, True]]]}, 400, None),
    ({"data": [[[1.0, "2"]]]}, 400, None),
    ({"data": [[[1.0, None]]]}, 400, None),
    ({"data": "abc"}, 400, "data"),
    ({"data": [[[1.0]]], "channel_dim": "0"}, 400, "channel_dim"),
    ({"data": [[[1.0]]], "validate": True}, 400, "validate"),
    ({}, 400, "data"),
])
def test_bad_calibration_data_is_400_and_stores_nothing(api, body, status, field):
    before = snapshot(api, "default")
    answer = assert_error(api.post("/instances/default/calibrate", body), status)
    if field is not None:
        assert answer.get("field") == field, answer
    else:
        assert str(answer.get("field", "data")).startswith("data"), answer
    assert snapshot(api, "default") == before


def test_a_per_channel_calibration_with_channel_dim_out_of_range_stores_nothing(api):
    create(api, "pc", {"per_channel": True})
    before = snapshot(api, "pc")
    assert_error(api.post("/instances/pc/calibrate", {"data": [[[1.0, 2.0]]], "channel_dim": 2}), 400,
                 field="channel_dim")
    assert snapshot(api, "pc") == before


@pytest.mark.parametrize(("config", "what"), [
    ({"per_channel": True, "calibration_method": "PERCENTILE"}, "8193 channels"),
    ({"quantization_type": "INT4", "group_size": 2, "calibration_method": "ENTROPY"}, "8194 blocks"),  # 4097 x 2
])
def test_histograms_beyond_the_limit_are_413_and_store_nothing(api, config, what):
    """A histogram method keeps 2048 int64 counts per channel (or block): 8193 channels of one value each would
    take 128 MiB and seconds for a 64 KiB body, so more than 8192 are refused before any histogram exists."""
    create(api, "hist", config)
    before = snapshot(api, "hist")
    batch = np.random.default_rng(0).standard_normal((8193, 2)).astype(F32)
    answer = assert_error(api.post("/instances/hist/calibrate", {"data": [batch.tolist()], "channel_dim": 0}), 413,
                          field="calibration_method")
    assert answer["detail"].startswith(f"{what} of 2048-bin histograms are too many"), answer
    assert snapshot(api, "hist") == before


@pytest.mark.parametrize("qtype", ["FLOAT16", "NONE"])
def test_types_without_scale_cannot_be_calibrated(api, qtype):
    create(api, "float", {"quantization_type": qtype})
    before = snapshot(api, "float")
    assert_error(api.post("/instances/float/calibrate", {"data": [[[1.0]]]}), 400, field="quantization_type")
    assert snapshot(api, "float") == before


def test_calibrate_unknown_instance_is_404(api):
    assert_error(api.post("/instances/ghost/calibrate", {"data": [[[1.0]]]}), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


def test_calibrate_bumps_the_version_every_worker_checks(api):
    version = QuantizerInstance.objects.get(pk="default").version
    ok(api.post("/instances/default/calibrate", {"data": [[[1.0]]]}))
    assert QuantizerInstance.objects.get(pk="default").version > version


# ---------------------------------------------------------------------------- compute_params
@SLASHES
def test_compute_params_answers_scale_and_zero_point(api, slash):
    # the asymmetric INT8 [-1, 5] example: scale float32(6/255), zp -86 (see test_api_quantize.py)
    body = ok(api.post(f"/instances/default/compute_params{slash}", {"data": [[-1.0, 5.0]]}))
    assert set(body) == {"scale", "zero_point"}
    assert_bits_equal(body["scale"], F32(np.float64(6.0) / 255.0))
    assert body["zero_point"] == -86
    assert isinstance(body["zero_point"], int)


@pytest.mark.parametrize(("channel_dim", "channel_idx", "lo", "hi"), [
    (None, 0, -2.0, 4.0),  # row 0 of [[1, -2, 4], [0.5, 8, -1]]
    (0, 1, -1.0, 8.0),  # row 1
    (1, 0, 0.0, 1.0),  # column 0: [1, 0.5] widened to include 0
    (1, 2, -1.0, 4.0),  # column 2
    (1, -1, -1.0, 4.0),  # negative index counts from the end
    (-1, 1, -2.0, 8.0),  # column 1
])
def test_compute_params_of_one_channel(api, channel_dim, channel_idx, lo, hi):
    data = [[1.0, -2.0, 4.0], [0.5, 8.0, -1.0]]
    body = {"data": data, "channel_idx": channel_idx}
    if channel_dim is not None:
        body["channel_dim"] = channel_dim
    answer = ok(api.post("/instances/default/compute_params", body))
    scale, zp = onnx_qparams(F32(lo), F32(hi), -128, 127, False)
    assert_bits_equal(answer["scale"], scale)
    assert answer["zero_point"] == int(zp)


def test_compute_params_of_a_per_channel_instance_gives_lists(api):
    create(api, "pc", {**SPEC_SYMMETRIC, "per_channel": True})
    answer = ok(api.post("/instances/pc/compute_params", {"data": SPEC_DATA}))
    # rows: amax 5.6 and 9.0; symmetric scale amax/127, zero points 0
    assert_bits_equal(answer["scale"], [F32(np.float64(F32(5.6)) / 127), F32(np.float64(F32(9.0)) / 127)])
    assert answer["zero_point"] == [0, 0]


@pytest.mark.parametrize("qtype", ["FLOAT16", "NONE"])
def test_compute_params_of_a_float_type_is_the_identity(api, qtype):
    create(api, "float", {"quantization_type": qtype})
    assert ok(api.post("/instances/float/compute_params", {"data": [[1.0, 2.0]]})) == {"scale": 1.0, "zero_point": 0}


DYNAMIC_ORT = [(c, r) for c, r in RECORDS if r["qparams_source"] == "ort_compute_scale_zp" and not r["reduce_range"]]
# every record's parameters are checked on the engine (test_reference_vectors.py::test_scale_zero_point_matches_ort,
# ::test_dynamic_quantizer_computes_ort_parameters); through HTTP one record of each kind
ORT_SAMPLE = representative(DYNAMIC_ORT)


@pytest.mark.parametrize(("case", "record"), ORT_SAMPLE, ids=[r["id"] for _, r in ORT_SAMPLE])
def test_compute_params_matches_onnx_runtime(api, case, record):
    create(api, "ort", {"quantization_type": record["dtype"], "symmetric": record["scheme"] == "symmetric",
                        "per_channel": record["axis"] is not None, "qparams_rule": "ort_tooling"})
    x = np.asarray(case["x"], F32).reshape(case["shape"]).tolist()
    answer = ok(api.post("/instances/ort/compute_params", {"data": x, "channel_dim": record["axis"]}))
    assert_bits_equal(answer["scale"], record["scale"])
    assert answer["zero_point"] == record["zero_point"]


@pytest.mark.parametrize("setup", ["fresh", "after_quantize", "static_imported", "calibrated", "per_channel"])
def test_compute_params_never_changes_the_instance(api, setup):
    if setup == "after_quantize":
        ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))
    elif setup == "static_imported":
        ok(api.put("/instances/default/config", {"quantization_mode": "STATIC"}))
        ok(api.post("/instances/default/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 1}}))
    elif setup == "calibrated":
        ok(api.post("/instances/default/calibrate", {"data": [[[1.0, 2.0]]]}))
    elif setup == "per_channel":
        ok(api.put("/instances/default/config", {"per_channel": True}))
        ok(api.post("/instances/default/quantize", {"data": SPEC_DATA}))
    before = snapshot(api, "default")
    version = QuantizerInstance.objects.get(pk="default").version
    for body in ({"data": [[0.0, 100.0]]}, {"data": SPEC_DATA, "channel_idx": 1}, {"data": [[-7.0, 3.0]]}):
        ok(api.post("/instances/default/compute_params", body))
    after = snapshot(api, "default")
    assert after == before
    assert QuantizerInstance.objects.get(pk="default").version == version
    registry.active().clear()
    assert snapshot(api, "default") == before


def test_compute_params_does_not_replace_the_parameters_dynamic_dequantize_uses(api):
    codes = ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))["data"]
    ok(api.post("/instances/default/compute_params", {"data": [[0.0, 100.0]]}))
    expected = onnx_dequantize(codes, F32(np.float64(6.0) / 255.0), -86)
    assert_bits_equal(ok(api.post("/instances/default/dequantize", {"data": codes}))["data"], expected)


@pytest.mark.parametrize(("body", "field"), [
    ({"data": [[1.0, 2.0]], "channel_idx": 1}, "channel_idx"),  # one row: only index 0 along axis 0
    ({"data": [[1.0, 2.0]], "channel_idx": -2}, "channel_idx"),
    ({"data": [[1.0, 2.0]], "channel_idx": 2, "channel_dim": 1}, "channel_idx"),
    ({"data": [[1.0, 2.0]], "channel_idx": True}, "channel_idx"),
    ({"data": [[1.0, 2.0]], "channel_idx": "0"}, "channel_idx"),
    ({"data": [[1.0, 2.0]], "channel_idx": 0, "channel_dim": 2}, "channel_dim"),
    ({"data": [[1.0, 2.0]], "channel_dim": -3}, "channel_dim"),
    ({"data": [[1.0, 2.0]], "validate": True}, "validate"),
    ({"data": [[1.0, 2.0]], "layer_name": 3}, "layer_name"),
    ({"data": [1.0, 2.0]}, "data"),
    ({"data": [[1.0], [2.0, 3.0]]}, "data"),
    ({"data": [[[1.0]]]}, "data"),
    ({"data": [[False]]}, "data"),
    ({}, "data"),
])
def test_compute_params_rejects_bad_input_and_changes_nothing(api, body, field):
    before = snapshot(api, "default")
    assert_error(api.post("/instances/default/compute_params", body), 400, field=field)
    assert snapshot(api, "default") == before


def test_compute_params_unknown_instance_is_404(api):
    assert_error(api.post("/instances/ghost/compute_params", {"data": [[1.0]]}), 404, code="instance.not_found",
                 detail="Quantizer instance ghost not found")


@pytest.mark.parametrize("route", ["calibrate", "compute_params"])
def test_get_on_calibration_routes_is_405(api, route):
    assert_error(api.get(f"/instances/default/{route}"), 405, code="http.method_not_allowed",
                 detail='Method "GET" not allowed.')


def test_grouped_instances_calibrate_per_block_through_http(api):
    """A grouped instance (INT4, groups of 2 along the last axis) calibrates one range per block and then
    quantizes with those block parameters: the ONNX arithmetic in numpy, per block of the two batches."""
    create(api, "grouped", {"quantization_type": "INT4", "group_size": 2, "calibration_method": "MINMAX"})
    batches = [[[1.0, -2.0, 4.0], [0.5, 0.25, -8.0]], [[3.0, 1.0, 2.0], [-1.0, 0.5, 6.0]]]
    ok(api.post("/instances/grouped/calibrate", {"data": batches}))
    stacked = np.asarray(batches, F32)
    padded = np.concatenate([stacked, stacked[..., -1:]], axis=-1).reshape(2, 2, 2, 2)
    lo = np.minimum(padded.min(axis=(0, 3)), F32(0))
    hi = np.maximum(padded.max(axis=(0, 3)), F32(0))
    scale = ((hi - lo) / F32(15)).astype(F32)
    zp = np.clip(np.rint(F32(-8) - lo / scale), -8, 7)
    exported = ok(api.get("/instances/grouped/parameters"))
    assert_bits_equal(exported["block_scales"], scale)
    assert exported["block_zero_points"] == zp.astype(int).tolist()
    x = np.asarray([[2.0, -1.0, 5.0], [0.1, -0.3, 9.0]], F32)
    codes = np.clip(np.rint(x / np.repeat(scale, 2, axis=1)[:, :3]) + np.repeat(zp, 2, axis=1)[:, :3], -8, 7)
    assert ok(api.post("/instances/grouped/quantize", {"data": x.tolist()}))["data"] == codes.tolist()
