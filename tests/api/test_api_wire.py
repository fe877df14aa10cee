"""What goes over the wire at the edges: the float32 range in JSON, N-D arrays, non-finite results, explicit
dequantize parameters, per-channel parameter headers and .npz answers."""

from __future__ import annotations

import io

import numpy as np
import pytest

from quantizers.arrays import parse_2d
from tests.api.helpers import F32, assert_error, create, load_npy, npy_bytes, ok, snapshot
from tests.api.helpers import upload as upload_npy

F32_MAX_TEXT = "3.4028235e+38"  # the shortest text of the float32 maximum, as numpy prints it


def test_the_float32_maximum_as_numpy_prints_it_is_accepted(api):
    assert str(np.finfo(np.float32).max) == F32_MAX_TEXT  # the premise, from numpy itself
    create(api, "wide", {"quantization_type": "INT8", "symmetric": True})
    body = f'{{"data": [[{F32_MAX_TEXT}, -{F32_MAX_TEXT}, 0.0]]}}'
    response = api.raw("post", "/instances/wide/quantize", body, "application/json")
    assert ok(response)["data"] == [[127, -127, 0]]
    # the careful (whole-list) parser agrees with the row-by-row one
    assert parse_2d([[float(F32_MAX_TEXT)]])[0, 0] == np.finfo(np.float32).max


@pytest.mark.parametrize("text", ["3.5e38", "-1e39", "3.4028236e+38"])
def test_values_that_round_to_infinity_in_float32_are_refused(api, text):
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float32(float(text)))  # independent check of the premise
    response = api.raw("post", "/instances/default/quantize", f'{{"data": [[1.0, {text}]]}}', "application/json")
    assert_error(response, 400, code="input.range")


def test_a_3d_json_array_is_told_to_use_a_binary_body(api):
    response = api.post("/instances/default/quantize", {"data": [[[1.0, 2.0]], [[3.0, 4.0]]]})
    body = assert_error(response, 400, code="input.shape")
    assert "2-D" in body["detail"]
    assert ".npy" in body["detail"]
    assert "octet-stream" in body["detail"]


def test_parse_2d_names_nested_rows_as_extra_dimensions():
    with pytest.raises(Exception, match="more than 2 dimensions"):
        parse_2d([[1.0], [[2.0]]])
    assert parse_2d([[1.0, 2.0]]).dtype == F32


# ---------------------------------------------------------------------------- results JSON cannot carry
def test_an_overflowing_result_is_refused_in_json_and_changes_nothing(api):
    codes = [[127, -127, 1]]
    before = snapshot(api, "default")
    response = api.post("/instances/default/dequantize", {"data": codes, "scale": 3.0e38})
    body = assert_error(response, 400, code="output.not_finite", field="data")
    assert "2 value(s)" in body["detail"]
    assert "application/x-npy" in body["detail"]
    assert snapshot(api, "default") == before  # not counted: the answer was refused


def test_an_overflowing_result_goes_out_as_npy_with_its_sign(api):
    response = api.raw("post", "/instances/default/dequantize?scale=3e38", npy_bytes(np.array([[127, -127, 1]],
                       np.int8)), "application/x-npy", HTTP_ACCEPT="application/x-npy")
    out = load_npy(ok_binary(response))
    with np.errstate(over="ignore"):
        expected = (np.array([[127, -127, 1]], np.int64) * F32(3.0e38)).astype(F32)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0] == np.inf
    assert out[0, 1] == -np.inf


# ---------------------------------------------------------------------------- explicit dequantize parameters
def onnx_dequantize(codes, scale, zero_point, axis=None):
    """ONNX DequantizeLinear in plain numpy: float32((q - zp) * scale)."""
    q = np.asarray(codes, np.int64)
    s, z = np.asarray(scale, F32), np.asarray(zero_point, np.int64)
    if axis is not None:
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((q - z) * s).astype(F32)


def test_dequantize_takes_scale_and_zero_point_in_json(api):
    create(api, "dq", {"quantization_type": "UINT8"})
    codes = [[0, 17, 255], [128, 3, 9]]
    body = ok(api.post("/instances/dq/dequantize", {"data": codes, "scale": 0.05, "zero_point": 128}))
    np.testing.assert_array_equal(np.asarray(body["data"], F32), onnx_dequantize(codes, 0.05, 128))
    per_channel = ok(api.post("/instances/dq/dequantize", {"data": codes, "scale": [0.5, 0.25],
                                                           "zero_point": [10, 0], "channel_dim": 0}))
    np.testing.assert_array_equal(np.asarray(per_channel["data"], F32),
                                  onnx_dequantize(codes, [0.5, 0.25], [10, 0], axis=0))
    assert_error(api.post("/instances/dq/dequantize", {"data": codes, "scale": 0.1, "zero_point": 300}), 400,
                 field="zero_point")
    assert_error(api.post("/instances/dq/dequantize", {"data": codes, "scale": "big"}), 400, field="scale")


def test_the_round_trip_with_the_parameters_quantize_answered_survives_someone_elses_quantize(api):
    """quantize -> store the codes -> (another client quantizes other data) -> dequantize with the parameters
    the first quantize answered: the stored codes come back as the first data, not scaled by the second."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.0, (32, 16)).astype(F32)
    first = api.raw("post", "/instances/default/quantize", npy_bytes(x), "application/x-npy",
                    HTTP_ACCEPT="application/x-npy")
    codes = load_npy(ok_binary(first))
    scale, zero_point = first["X-Scale"], first["X-Zero-Point"]
    ok(api.post("/instances/default/quantize", {"data": [[1000.0, -5000.0]]}))  # someone else's quantize
    answer = api.raw("post", f"/instances/default/dequantize?scale={scale}&zero_point={zero_point}",
                     npy_bytes(codes), "application/x-npy", HTTP_ACCEPT="application/x-npy")
    restored = load_npy(ok_binary(answer))
    np.testing.assert_array_equal(restored, onnx_dequantize(codes, float(scale), int(zero_point)))
    sqnr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x - restored).astype(np.float64) ** 2))
    assert sqnr > 35  # 8-bit codes of normal data: about 40 dB; the wrong scale gave -44 dB


def test_binary_dequantize_takes_per_channel_parameters_in_the_query(api):
    codes = np.array([[1, 2], [3, 4], [5, 6]], np.int8)
    response = api.raw("post", "/instances/default/dequantize?scale=0.1,0.2&zero_point=0,1&channel_dim=1",
                       npy_bytes(codes), "application/x-npy", HTTP_ACCEPT="application/x-npy")
    np.testing.assert_array_equal(load_npy(ok_binary(response)), onnx_dequantize(codes, [0.1, 0.2], [0, 1], axis=1))
    bad = api.raw("post", "/instances/default/dequantize?scale=0.1,x", npy_bytes(codes), "application/x-npy")
    assert_error(bad, 400, field="scale")
    assert_error(api.post("/instances/default/quantize?scale=0.1", {"data": [[1.0]]}), 400, field="scale")


# ---------------------------------------------------------------------------- parameters in headers and .npz
def per_channel_quantize(api, channels, accept="application/json"):
    create(api, f"pc{channels}", {"per_channel": True})
    x = np.linspace(-1.0, 1.0, channels * 3, dtype=F32).reshape(channels, 3)
    return x, api.post(f"/instances/pc{channels}/quantize", {"data": x.tolist()}, HTTP_ACCEPT=accept)


def test_per_channel_parameters_ride_in_headers_up_to_64_channels(api):
    _, response = per_channel_quantize(api, 64)
    assert len(ok(response)["data"]) == 64
    assert len(response["X-Scale"].split(",")) == 64
    assert len(response["X-Zero-Point"].split(",")) == 64
    assert "X-Parameters-Omitted" not in response


@pytest.mark.parametrize("channels", [65, 4096])
def test_above_64_channels_the_headers_point_to_npz(api, channels):
    _, response = per_channel_quantize(api, channels)
    ok(response)
    assert "X-Scale" not in response
    assert "X-Zero-Point" not in response
    assert "application/x-npz" in response["X-Parameters-Omitted"]
    assert response["X-Channel-Dim"] == "0"
    assert sum(len(k) + len(v) + 4 for k, v in response.items()) < 8192


def test_per_tensor_answers_carry_the_parameters_in_every_format(api):
    create(api, "sym", {"symmetric": True})
    for accept in ("application/json", "application/x-npy", "application/octet-stream", "application/x-npz"):
        response = api.post("/instances/sym/quantize", {"data": [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]},
                            HTTP_ACCEPT=accept)
        assert response.status_code == 200
        assert F32(response["X-Scale"]) == F32(9.0) / F32(127)
        assert response["X-Zero-Point"] == "0"


def load_npz(content):
    with np.load(io.BytesIO(content), allow_pickle=False) as members:
        return {name: members[name] for name in members.files}


def test_npz_answers_hold_the_codes_and_their_parameters(api):
    x, response = per_channel_quantize(api, 100, accept="application/x-npz")
    assert response["Content-Type"] == "application/x-npz"
    members = load_npz(ok_binary(response))
    assert set(members) == {"data", "scale", "zero_point", "axis"}
    assert int(members["axis"]) == 0
    assert members["scale"].dtype == F32
    assert members["scale"].shape == (100,)
    lo, hi = np.minimum(x.min(axis=1), 0), np.maximum(x.max(axis=1), 0)  # ONNX's asymmetric INT8 rule
    np.testing.assert_array_equal(members["scale"], ((hi - lo) / F32(255)).astype(F32))
    expected = np.clip(np.rint(x / members["scale"][:, None]) + members["zero_point"][:, None], -128, 127)
    np.testing.assert_array_equal(members["data"], expected)


def test_npz_per_tensor_has_no_axis_and_a_float_type_has_data_only(api):
    create(api, "half", {"quantization_type": "FLOAT16"})
    per_tensor = load_npz(ok_binary(api.post("/instances/default/quantize?format=npz", {"data": [[0.5, -2.0]]})))
    assert set(per_tensor) == {"data", "scale", "zero_point"}
    assert per_tensor["scale"].shape == ()
    half = load_npz(ok_binary(api.post("/instances/half/quantize", {"data": [[0.5, -2.0]]},
                                       HTTP_ACCEPT="application/x-npz")))
    assert set(half) == {"data"}
    np.testing.assert_array_equal(half["data"], np.array([[0.5, -2.0]], np.float16))
    upload = upload_npy("default", npy_bytes(np.array([[1.0, 2.0]], F32)), HTTP_ACCEPT="application/x-npz")
    assert set(load_npz(ok_binary(upload))) == {"data", "scale", "zero_point"}


def ok_binary(response):
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return response.content


def test_parameter_values_in_json_must_be_numbers(api):
    for bad in ([None], [], ["0.1"], True, {"a": 1}):
        response = api.post("/instances/default/dequantize", {"data": [[1]], "scale": 0.1, "zero_point": bad})
        assert_error(response, 400, field="zero_point")


def test_upload_without_a_body_is_a_400(api):
    assert_error(api.post("/instances/default/upload_numpy"), 400, code="request.invalid", field="file")
