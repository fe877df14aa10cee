"""`report` on quantize and quantize_dequantize: JSON `report`, X-Report-* headers, and the statistics' quality
object. Expected figures come from numpy in the test: the codes dequantized with the X-Scale / X-Zero-Point the
answer carries (ONNX DequantizeLinear, `onnx_dequantize`), compared in float64 with the input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantizers import registry
from tests.api.helpers import NPY, assert_error, create, load_npy, npy_bytes, ok, onnx_dequantize, snapshot

F32 = np.float32
RNG = np.random.default_rng(11)
DATA = (RNG.standard_normal((6, 40)) * RNG.uniform(0.5, 4, (6, 1))).astype(F32)


def figures(x: np.ndarray, d: np.ndarray) -> dict[str, float | None]:
    x64, e = x.astype(np.float64), d.astype(np.float64) - x.astype(np.float64)
    signal, noise = float(np.sum(x64 ** 2)), float(np.sum(e ** 2))
    return {"sqnr_db": None if signal == 0 or noise == 0 else 10 * math.log10(signal / noise),
            "max_abs_error": float(np.max(np.abs(e))), "rms_error": float(np.sqrt(np.mean(e ** 2))),
            "mean_error": float(np.mean(e)), "range": [float(x.min()), float(x.max())], "values": x.size}


def assert_figures(report: dict, want: dict) -> None:
    assert report["sqnr_db"] == pytest.approx(want["sqnr_db"], abs=1e-6)
    for name in ("max_abs_error", "rms_error"):
        assert report[name] == pytest.approx(want[name], rel=1e-6), name
    assert report["mean_error"] == pytest.approx(want["mean_error"], abs=1e-6 * want["max_abs_error"])
    assert report["range"] == want["range"]
    assert report["values"] == want["values"]


def codes_and_params(response) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.array([float(v) for v in response["X-Scale"].split(",")], F32)
    zp = np.array([int(v) for v in response["X-Zero-Point"].split(",")])
    return scale, zp, np.asarray(response.json()["data"])


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_reports_its_figures(api, per_channel):
    create(api, "q", {"per_channel": per_channel})
    response = api.post("/instances/q/quantize", {"data": DATA.tolist(), "report": True,
                                                 **({"channel_dim": 0} if per_channel else {})})
    body = ok(response)
    scale, zp, codes = codes_and_params(response)
    shape = (-1, 1) if per_channel else ()
    dequantized = onnx_dequantize(codes, scale.reshape(shape), zp.reshape(shape))
    report = body["report"]
    assert_figures(report, figures(DATA, dequantized))
    assert report["clipped"] == 0
    assert report["clipped_share"] == 0.0
    if per_channel:
        assert len(report["channel_sqnr_db"]) == DATA.shape[0]
        for got, x, d in zip(report["channel_sqnr_db"], DATA, dequantized, strict=True):
            assert got == pytest.approx(figures(x, d)["sqnr_db"], abs=1e-6)
    else:
        assert "channel_sqnr_db" not in report


def test_quantize_dequantize_reports_against_its_own_answer(api):
    body = ok(api.post("/instances/default/quantize_dequantize", {"data": DATA.tolist(), "report": True}))
    assert_figures(body["report"], figures(DATA, np.asarray(body["data"], F32)))


def test_clipping_of_a_static_instance_is_reported(api):
    create(api, "st", {"quantization_mode": "STATIC"})
    ok(api.post("/instances/st/parameters", {"parameters": {"global_scale": 0.01, "global_zero_point": 0}}))
    body = ok(api.post("/instances/st/quantize", {"data": DATA.tolist(), "report": True}))
    codes = np.rint(DATA / F32(0.01))
    want = int(np.count_nonzero((codes > 127) | (codes < -128)))
    assert want > 0
    assert body["report"]["clipped"] == want
    assert body["report"]["clipped_share"] == want / DATA.size
    assert_figures(body["report"], figures(DATA, onnx_dequantize(body["data"], F32(0.01), 0)))


@pytest.mark.parametrize("operation", ["quantize", "quantize_dequantize"])
def test_binary_answers_carry_the_figures_in_headers(api, operation):
    json_report = ok(api.post(f"/instances/default/{operation}", {"data": DATA.tolist(), "report": True}))["report"]
    response = api.raw("post", f"/instances/default/{operation}?report=true", npy_bytes(DATA), NPY, HTTP_ACCEPT=NPY)
    assert response.status_code == 200
    load_npy(response.content)
    assert float(response["X-Report-Sqnr-Db"]) == json_report["sqnr_db"]
    assert float(response["X-Report-Max-Abs-Error"]) == json_report["max_abs_error"]
    assert float(response["X-Report-Rms-Error"]) == json_report["rms_error"]
    assert int(response["X-Report-Clipped"]) == json_report["clipped"]


def test_without_report_there_is_none(api):
    body = ok(api.post("/instances/default/quantize", {"data": DATA.tolist()}))
    assert "report" not in body
    response = api.raw("post", "/instances/default/quantize?report=false", npy_bytes(DATA), NPY, HTTP_ACCEPT=NPY)
    assert "X-Report-Sqnr-Db" not in response


@pytest.mark.parametrize("data", [[[0.0, 0.0], [0.0, 0.0]], [[-127.0, 0.0, 127.0]]], ids=["zeros", "exact"])
def test_sqnr_is_null_for_exact_or_all_zero_data(api, data):
    create(api, "sym", {"symmetric": True})
    body = ok(api.post("/instances/sym/quantize", {"data": data, "report": True}))  # ok() refuses Infinity
    assert body["report"]["sqnr_db"] is None
    assert body["report"]["max_abs_error"] == 0.0
    response = api.raw("post", "/instances/sym/quantize?report=true", npy_bytes(np.array(data, F32)), NPY,
                       HTTP_ACCEPT=NPY)
    assert response["X-Report-Sqnr-Db"] == "null"


def test_bad_report_values_are_400_and_change_nothing(api):
    before = snapshot(api, "default")
    assert_error(api.post("/instances/default/quantize", {"data": [[1.0]], "report": "yes"}), 400, field="report")
    assert_error(api.raw("post", "/instances/default/quantize?report=maybe", npy_bytes([[1.0]]), NPY), 400,
                 field="report")
    # dequantize has nothing to report on
    assert_error(api.raw("post", "/instances/default/dequantize?report=true", npy_bytes(np.array([[1]], np.int8)),
                         NPY), 400, field="report")
    assert_error(api.post("/instances/default/dequantize", {"data": [[1]], "report": True}), 400, field="report")
    assert snapshot(api, "default") == before


def quality(api, instance_id="default"):
    return ok(api.get(f"/instances/{instance_id}/stats"))["quality"]


def test_stats_quality_is_fed_by_reported_calls_only(api):
    assert quality(api) == {"latest_sqnr_db": None, "min_sqnr_db": None, "clipped_share": None, "reported_calls": 0}
    ok(api.post("/instances/default/quantize", {"data": DATA.tolist()}))
    assert quality(api)["reported_calls"] == 0
    create(api, "st", {"quantization_mode": "STATIC"})
    ok(api.post("/instances/st/parameters", {"parameters": {"global_scale": 0.02, "global_zero_point": 0}}))
    reports = []
    for data in (DATA, DATA * 0.1, DATA[:2] * 3):
        reports.append(ok(api.post("/instances/st/quantize", {"data": data.tolist(), "report": True}))["report"])
        ok(api.post("/instances/st/quantize_dequantize", {"data": (data * 50).tolist()}))  # unreported: no trace
    got = quality(api, "st")
    assert got["reported_calls"] == 3
    assert got["latest_sqnr_db"] == reports[-1]["sqnr_db"]
    assert got["min_sqnr_db"] == min(r["sqnr_db"] for r in reports)
    assert got["clipped_share"] == sum(r["clipped"] for r in reports) / sum(r["values"] for r in reports)
    # an exact call: latest null, the lowest stays
    ok(api.post("/instances/st/quantize", {"data": [[0.02, -0.04]], "report": True}))
    assert quality(api, "st")["latest_sqnr_db"] is None
    assert quality(api, "st")["min_sqnr_db"] == got["min_sqnr_db"]
    registry.active().clear()  # a restarted worker reads the same
    assert quality(api, "st")["reported_calls"] == 4
    ok(api.post("/instances/st/reset_stats"))
    assert quality(api, "st") == {"latest_sqnr_db": None, "min_sqnr_db": None, "clipped_share": None,
                                  "reported_calls": 0}


def test_the_schema_documents_report(api):
    schema = api.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    sqnr = components["QualityReportResponse"]["properties"]["sqnr_db"]
    assert sqnr["nullable"] is True
    assert "null" in sqnr["description"]
    assert components["QuantizationRequest"]["properties"]["report"]["type"] == "boolean"
    assert components["StatsResponse"]["properties"]["quality"]
    for path in ("/instances/{instance_id}/quantize", "/instances/{instance_id}/quantize_dequantize"):
        headers = schema["paths"][path]["post"]["responses"]["200"]["headers"]
        assert set(headers) == {"X-Report-Sqnr-Db", "X-Report-Max-Abs-Error", "X-Report-Rms-Error",
                                "X-Report-Clipped"}


def test_the_report_schema_lists_the_engines_fields(api):
    import dataclasses

    from engine import QualityStats, quality_report, quality_summary
    schema = api.get("/api/schema/?format=json").json()["components"]["schemas"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    sent = quality_report(x, x + np.float32(0.5), 0, channel_dim=0).to_dict()  # a per-channel report: every key
    assert set(schema["QualityReportResponse"]["properties"]) == set(sent)
    assert set(schema["QualityStatsResponse"]["properties"]) == set(quality_summary(
        dataclasses.asdict(QualityStats())))
