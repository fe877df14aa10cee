"""The Python client against a live gunicorn: every method round-trips, answers checked against numpy written here
(ONNX QuantizeLinear / DequantizeLinear, the onnx parameter rule of docs/numerics.md), errors as exceptions."""

from __future__ import annotations

import httpx
import ml_dtypes
import numpy as np
import pytest
from quantsite_client import (
    AuthenticationFailed,
    ConnectionFailed,
    InstanceExists,
    InstanceNotFound,
    InvalidInput,
    NotCalibrated,
    PayloadTooLarge,
    PermissionDenied,
    QuantsiteClient,
    ServiceUnavailable,
)

from tests.client.conftest import LiveServer
from tests.integration import stack

RNG = np.random.default_rng(13)


def onnx_asymmetric(x: np.ndarray, qmin: int = -128, qmax: int = 127) -> tuple[np.float32, int]:
    lo, hi = np.float32(min(0.0, x.min())), np.float32(max(0.0, x.max()))
    scale = np.float32(hi - lo) / np.float32(qmax - qmin)
    zero_point = int(np.rint(np.clip(np.float32(qmin) - lo / scale, qmin, qmax)))
    return scale, zero_point


def quantize_linear(x: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int, qmin: int = -128,
                    qmax: int = 127) -> np.ndarray:
    return np.clip(np.rint(x / np.float32(scale)) + zero_point, qmin, qmax).astype(np.int64)


def dequantize_linear(codes: np.ndarray, scale: np.ndarray | float, zero_point: np.ndarray | int) -> np.ndarray:
    return ((codes.astype(np.int32) - zero_point).astype(np.float32) * np.float32(scale)).astype(np.float32)


# ---------------------------------------------------------------------------- instances and configuration
def test_instances_and_config_round_trip(qs: QuantsiteClient, fresh_id: str) -> None:
    assert qs.health()["status"] == "healthy"
    assert "created successfully" in qs.create_instance(fresh_id, quantization_type="UINT8", symmetric=True)
    assert fresh_id in qs.instances()
    config = qs.config(fresh_id)
    assert (config["quantization_type"], config["symmetric"], config["num_bits"]) == ("UINT8", True, 8)

    qs.update_config(fresh_id, per_channel=True, calibration_method="percentile")
    config = qs.config(fresh_id)
    assert (config["quantization_type"], config["per_channel"], config["calibration_method"]) == \
        ("UINT8", True, "PERCENTILE")
    qs.replace_config(fresh_id, quantization_type="INT16")
    config = qs.config(fresh_id)
    assert (config["quantization_type"], config["per_channel"], config["num_bits"]) == ("INT16", False, 16)

    with pytest.raises(InstanceExists) as exists:
        qs.create_instance(fresh_id)
    assert (exists.value.status, exists.value.code) == (409, "instance.exists")
    assert "deleted successfully" in qs.delete_instance(fresh_id)
    assert fresh_id not in qs.instances()
    with pytest.raises(InstanceNotFound) as missing:
        qs.delete_instance(fresh_id)
    assert missing.value.detail == f"Quantizer instance {fresh_id} not found"
    assert (missing.value.status, missing.value.code) == (404, "instance.not_found")
    with pytest.raises(PermissionDenied):
        qs.delete_instance("default")


# ---------------------------------------------------------------------------- array operations
@pytest.mark.parametrize("wire", ["binary", "json"])
def test_quantize_dequantize_per_tensor(qs: QuantsiteClient, fresh_id: str, wire: str) -> None:
    qs.create_instance(fresh_id)  # INT8, asymmetric, dynamic: parameters from each call's data
    x = RNG.standard_normal((6, 5) if wire == "json" else (3, 4, 5)).astype(np.float32) * 3
    q = qs.quantize(fresh_id, x, wire=wire)  # type: ignore[arg-type]
    scale, zero_point = onnx_asymmetric(x)
    assert q.quantization_type == "INT8"
    assert np.float32(q.scale) == scale
    assert q.zero_point == zero_point
    assert q.axis is None
    assert q.codes.shape == x.shape
    np.testing.assert_array_equal(q.codes, quantize_linear(x, scale, zero_point))

    values = qs.dequantize(fresh_id, q, wire=wire)  # type: ignore[arg-type]
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, dequantize_linear(q.codes, scale, zero_point))
    # explicit parameters win over the instance's: another scale gives other values
    doubled = qs.dequantize(fresh_id, q.codes, scale=float(scale) * 2, zero_point=zero_point)
    np.testing.assert_array_equal(doubled, dequantize_linear(q.codes, np.float32(float(scale) * 2), zero_point))

    fake = qs.quantize_dequantize(fresh_id, x)
    np.testing.assert_array_equal(fake, dequantize_linear(quantize_linear(x, scale, zero_point), scale, zero_point))


def test_quantize_per_channel(qs: QuantsiteClient, fresh_id: str) -> None:
    qs.create_instance(fresh_id, symmetric=True, per_channel=True)
    x = RNG.standard_normal((4, 7)).astype(np.float32) * np.arange(1, 5, dtype=np.float32)[:, None]
    q = qs.quantize(fresh_id, x, channel_dim=0)
    scales = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    assert q.axis == 0
    np.testing.assert_array_equal(q.scale, scales)
    np.testing.assert_array_equal(q.zero_point, np.zeros(4))
    np.testing.assert_array_equal(q.codes, quantize_linear(x, scales[:, None], 0))
    np.testing.assert_array_equal(qs.dequantize(fresh_id, q), dequantize_linear(q.codes, scales[:, None], 0))


def test_hundreds_of_channels_round_trip(qs: QuantsiteClient, fresh_id: str) -> None:
    """Every channel's parameters come with the codes (.npz; headers stop at 64 channels), and go back to
    dequantize although they do not fit in a request line."""
    qs.create_instance(fresh_id, symmetric=True, per_channel=True)
    x = RNG.standard_normal((600, 4)).astype(np.float32)
    q = qs.quantize(fresh_id, x, channel_dim=0)
    scales = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    np.testing.assert_array_equal(q.scale, scales)
    np.testing.assert_array_equal(qs.dequantize(fresh_id, q), dequantize_linear(q.codes, scales[:, None], 0))


def test_float8_codes_come_back_as_ml_dtypes(qs: QuantsiteClient, fresh_id: str) -> None:
    qs.create_instance(fresh_id, quantization_type="FP8_E4M3")
    x = RNG.standard_normal((8, 8)).astype(np.float32)
    q = qs.quantize(fresh_id, x)
    assert q.codes.dtype == np.dtype(ml_dtypes.float8_e4m3fn)
    assert q.zero_point is None
    expected = (x / np.float32(q.scale)).astype(ml_dtypes.float8_e4m3fn)  # ml_dtypes rounds to nearest even
    np.testing.assert_array_equal(q.codes.view(np.uint8), expected.view(np.uint8))
    # the float8 array goes back as octet-stream float8 values
    np.testing.assert_array_equal(qs.dequantize(fresh_id, q),
                                  q.codes.astype(np.float32) * np.float32(q.scale))


def test_calibrate_parameters_and_layers(qs: QuantsiteClient, fresh_id: str) -> None:
    qs.create_instance(fresh_id, symmetric=True)
    batches = [RNG.standard_normal((5, 3)).astype(np.float32), RNG.standard_normal((2, 3)).astype(np.float32) * 4]
    amax = max(float(np.abs(b).max()) for b in batches)
    answer = qs.calibrate(fresh_id, batches)
    assert answer["message"] == "Calibration successful"
    assert np.float32(answer["scale"]) == np.float32(amax) / np.float32(127)
    assert answer["zero_point"] == 0

    exported = qs.parameters(fresh_id)
    assert exported["quantization_mode"] == "CALIBRATED"
    assert exported["is_calibrated"] is True
    assert exported["calibration"]["batches"] == 2
    assert exported["calibration"]["elements"] == 21
    # compute_params changes nothing: the stored scale stays
    probe = RNG.standard_normal((3, 3)).astype(np.float32)
    params = qs.compute_params(fresh_id, probe)
    assert np.float32(params["scale"]) == np.float32(np.abs(probe).max()) / np.float32(127)
    assert qs.parameters(fresh_id)["global_scale"] == exported["global_scale"]

    other = fresh_id + "_copy"
    qs.create_instance(other, symmetric=True)
    qs.import_parameters(other, {"global_scale": np.float32(0.05), "global_zero_point": 0,
                                 "layer_params": {"fc1": {"scale": 0.25, "zero_point": 0}}})
    layer = qs.layer_params(other, "fc1")
    assert (layer["scale"], layer["parameters_source"], layer["used_by_quantize"]) == (0.25, "layer", True)
    assert qs.layer_params(other, "fc2")["scale"] == 0.05
    x = np.array([[0.5, -1.0, 30.0]], np.float32)
    np.testing.assert_array_equal(qs.quantize(other, x, layer_name="fc1").codes, quantize_linear(x, 0.25, 0))
    qs.delete_instance(other)


def test_stats_count_the_calls(qs: QuantsiteClient, fresh_id: str) -> None:
    qs.create_instance(fresh_id)
    x = RNG.standard_normal((10, 10)).astype(np.float32)
    for _ in range(3):
        qs.quantize(fresh_id, x)
    qs.quantize_dequantize(fresh_id, x)
    figures = qs.stats(fresh_id)
    assert (figures["quantize_calls"], figures["dequantize_calls"], figures["total_values"]) == (4, 1, 400)
    qs.reset_stats(fresh_id)
    assert qs.stats(fresh_id)["quantize_calls"] == 0
    assert qs.clear_cache(fresh_id) == "Cache cleared successfully"


# ---------------------------------------------------------------------------- errors
def test_errors_carry_the_server_detail_code_and_field(qs: QuantsiteClient, fresh_id: str,
                                                       gunicorn_server: LiveServer) -> None:
    with pytest.raises(InstanceNotFound) as missing:
        qs.quantize("no_such_instance", np.ones((2, 2), np.float32))
    assert missing.value.code == "instance.not_found"
    assert missing.value.request_id

    qs.create_instance(fresh_id)
    with pytest.raises(InvalidInput) as nan:
        qs.quantize(fresh_id, np.array([[1.0, np.nan]], np.float32))
    assert (nan.value.status, nan.value.code) == (400, "input.nan")
    assert "NaN" in nan.value.detail
    with pytest.raises(InvalidInput) as option:
        qs.quantize(fresh_id, np.ones((2, 2), np.float32), channel_dim=0)  # not a per-channel instance
    assert option.value.field == "channel_dim"
    with pytest.raises(NotCalibrated) as not_calibrated:
        qs.dequantize(fresh_id, np.zeros((2, 2), np.int8))  # dynamic mode, no quantize yet
    assert (not_calibrated.value.status, not_calibrated.value.code) == (409, "state.not_calibrated")
    limit = int(gunicorn_server.env["QUANTIZER_MAX_ELEMENTS"])
    with pytest.raises(PayloadTooLarge) as too_large:
        qs.quantize(fresh_id, np.zeros(limit + 1, np.float32))
    assert too_large.value.status == 413

    with QuantsiteClient(gunicorn_server.url) as anonymous, pytest.raises(AuthenticationFailed) as refused:
        anonymous.instances()
    assert refused.value.status == 401
    with QuantsiteClient(f"http://127.0.0.1:{stack.free_port()}", retries=1, backoff=0.01) as nowhere, \
            pytest.raises(ConnectionFailed):
        nowhere.instances()


# ---------------------------------------------------------------------------- retries (a scripted transport)
def scripted(statuses: list[int], seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        status = statuses.pop(0)
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        if status == 503:
            return httpx.Response(503, json={"detail": "The database is unavailable; retry shortly",
                                             "code": "database.unavailable"}, headers={"Retry-After": "0"})
        return httpx.Response(status, json=["default"])
    return httpx.MockTransport(handler)


def test_idempotent_calls_are_retried_on_503_and_connection_errors() -> None:
    seen: list[str] = []
    with QuantsiteClient("http://q.test", transport=scripted([503, 0, 200], seen), backoff=0.001) as client:
        assert client.instances() == ["default"]
    assert seen == ["GET", "GET", "GET"]

    seen.clear()
    with QuantsiteClient("http://q.test", transport=scripted([503] * 5, seen), retries=2, backoff=0.001) as client, \
            pytest.raises(ServiceUnavailable) as unavailable:
        client.stats("default")
    assert len(seen) == 3
    assert unavailable.value.code == "database.unavailable"


def test_calls_that_change_state_are_never_sent_twice() -> None:
    seen: list[str] = []
    with QuantsiteClient("http://q.test", transport=scripted([503, 200], seen), backoff=0.001) as client, \
            pytest.raises(ServiceUnavailable):
        client.quantize("default", np.ones((2, 2), np.float32))
    assert seen == ["POST"]
    seen.clear()
    with QuantsiteClient("http://q.test", transport=scripted([0, 200], seen), backoff=0.001) as client, \
            pytest.raises(ConnectionFailed):
        client.calibrate("default", [np.ones((2, 2), np.float32)])
    assert seen == ["POST"]
