"""POST /instances/{id}/evaluate: each row reproduced by running its config through the API one by one (a fresh
instance, calibrated first with the same data when its mode is CALIBRATED or STATIC), bytes counted in the test
from the codes and parameters that quantize answers, the standard grid as the issue lists it, the recommendation
rule, the limits, and nothing changed."""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest
from django.test import Client, override_settings

from tests.api.helpers import assert_error, create, ok, snapshot

F32 = np.float32
RNG = np.random.default_rng(5)
# 4 channels (rows) of different spreads with a few outliers: granularity, symmetry and calibration all matter.
DATA = (RNG.standard_normal((4, 48)) * np.array([[0.2], [1.0], [3.0], [0.5]])).astype(F32)
DATA[1, 7] = 9.0
CANDIDATES = [
    {"quantization_type": "INT8"},
    {"quantization_type": "UINT8", "symmetric": True, "per_channel": True},
    {"quantization_type": "INT8", "num_bits": 4, "quantization_mode": "CALIBRATED", "calibration_method": "MSE"},
    {"quantization_type": "INT4", "per_channel": True, "quantization_mode": "STATIC",
     "calibration_method": "PERCENTILE"},
    {"quantization_type": "FP8_E4M3", "symmetric": True},
    {"quantization_type": "FLOAT16"},
    {"quantization_type": "BFLOAT16"},
]

# The grid: types x per-tensor / per-channel x symmetric / asymmetric x minmax / percentile / MSE, as
# applicable (FP8 symmetric only, without MSE; the float types once).
INTEGER_TYPES = [("INT8", 8), ("UINT8", 8), ("INT16", 16), ("INT8", 4), ("INT4", 4), ("UINT4", 4)]
GRID_SIZE = len(INTEGER_TYPES) * 2 * 2 * 3 + 2 * 2 * 1 * 2 + 2


def evaluate(api, body, instance_id="default"):
    return ok(api.post(f"/instances/{instance_id}/evaluate", body))


def reproduce(api, name, config):
    """The candidate's config on a fresh instance: quantize_dequantize and quantize with report, and the bytes of
    its codes and parameters as the quantize answer gives them."""
    create(api, name, config)
    if config["quantization_mode"] in ("CALIBRATED", "STATIC") and config["quantization_type"] not in (
            "FLOAT16", "BFLOAT16", "NONE"):
        ok(api.post(f"/instances/{name}/calibrate", {"data": [DATA.tolist()]}))
    fake = ok(api.post(f"/instances/{name}/quantize_dequantize", {"data": DATA.tolist(), "report": True}))["report"]
    response = api.post(f"/instances/{name}/quantize", {"data": DATA.tolist(), "report": True})
    quantized = ok(response)
    assert quantized["report"]["sqnr_db"] == fake["sqnr_db"]  # the same codes, dequantized exactly
    qtype = config["quantization_type"]
    bits = config["num_bits"] if qtype in ("INT8", "UINT8", "INT16", "INT4", "UINT4") else {
        "FP8_E4M3": 8, "FP8_E5M2": 8, "FLOAT16": 16, "BFLOAT16": 16}[qtype]
    scales = len(response["X-Scale"].split(",")) if "X-Scale" in response else 0
    zero_points = len(response["X-Zero-Point"].split(",")) if "X-Zero-Point" in response else 0
    size = math.ceil(np.asarray(quantized["data"]).size * bits / 8) + 4 * (scales + zero_points)
    return fake, bits, size


def assert_row_reproduced(api, name, row):
    report, bits, size = reproduce(api, name, row["config"])
    assert row["sqnr_db"] == report["sqnr_db"]
    assert row["max_abs_error"] == report["max_abs_error"]
    assert row["clipped_share"] == report["clipped_share"]
    assert row["bits"] == bits
    assert row["bytes"] == size
    assert row["ms"] > 0


def test_each_candidate_is_reproduced_one_by_one(api):
    body = evaluate(api, {"data": DATA.tolist(), "candidates": CANDIDATES})
    assert body["target"] is None
    assert body["recommended"] is None
    assert len(body["candidates"]) == len(CANDIDATES)
    for index, (row, partial) in enumerate(zip(body["candidates"], CANDIDATES, strict=True)):
        assert {k: row["config"][k] for k in partial} == partial  # the partial config over the instance's
        assert_row_reproduced(api, f"c{index}", row)


def test_the_standard_grid_and_its_recommendation(api):
    target = 30.0
    body = evaluate(api, {"data": DATA.tolist(), "target": {"min_sqnr_db": target}})
    rows = body["candidates"]
    assert len(rows) == GRID_SIZE
    kinds = {(r["config"]["quantization_type"], r["config"]["num_bits"], r["config"]["per_channel"],
              r["config"]["symmetric"], r["config"]["calibration_method"], r["config"]["quantization_mode"])
             for r in rows}
    assert len(kinds) == GRID_SIZE
    for qtype, bits in INTEGER_TYPES:
        for per_channel in (False, True):
            for symmetric in (False, True):
                for method in ("MINMAX", "PERCENTILE", "MSE"):
                    assert (qtype, bits, per_channel, symmetric, method, "CALIBRATED") in kinds
    assert {k[0] for k in kinds} == {"INT8", "UINT8", "INT16", "INT4", "UINT4", "FP8_E4M3", "FP8_E5M2", "FLOAT16",
                                     "BFLOAT16"}
    for index, row in enumerate(rows):
        assert_row_reproduced(api, f"g{index}", row)

    recommended = body["recommended"]
    assert body["target"] == {"min_sqnr_db": target}
    assert recommended in rows
    assert recommended["sqnr_db"] is None or recommended["sqnr_db"] >= target
    meeting = [r for r in rows if r["sqnr_db"] is None or r["sqnr_db"] >= target]
    assert all(r["bytes"] >= recommended["bytes"] for r in meeting)  # no smaller candidate meets it
    ties = [r for r in meeting if r["bytes"] == recommended["bytes"]]
    assert recommended == max(ties, key=lambda r: (math.inf if r["sqnr_db"] is None else r["sqnr_db"],
                                                   -rows.index(r)))


def test_the_recommended_config_applies_with_patch(api):
    body = evaluate(api, {"data": DATA.tolist(), "candidates": CANDIDATES[:3], "target": {"min_sqnr_db": 20}})
    recommended = body["recommended"]
    assert recommended is not None
    create(api, "target")
    answer = ok(api.patch("/instances/target/config", recommended["config"]))
    assert answer == {"message": "Configuration for quantizer instance target updated successfully"}
    assert ok(api.get("/instances/target/config")) == recommended["config"]


def test_no_candidate_meets_an_impossible_target(api):
    body = evaluate(api, {"data": DATA.tolist(), "candidates": CANDIDATES[:2], "target": {"min_sqnr_db": 500}})
    assert body["recommended"] is None
    assert body["target"] == {"min_sqnr_db": 500}


def test_ties_go_to_the_higher_sqnr_then_the_earlier_candidate(api):
    same = {"quantization_type": "INT8"}
    better = {"quantization_type": "INT8", "quantization_mode": "CALIBRATED", "calibration_method": "MSE"}
    body = evaluate(api, {"data": DATA.tolist(), "candidates": [same, better, same], "target": {"min_sqnr_db": 1}})
    rows = body["candidates"]
    assert rows[0]["bytes"] == rows[1]["bytes"] == rows[2]["bytes"]
    want = 1 if rows[1]["sqnr_db"] > rows[0]["sqnr_db"] else 0
    assert body["recommended"] == rows[want]


def test_evaluate_changes_nothing(api):
    create(api, "calm", {"quantization_type": "UINT8"})
    before = snapshot(api, "calm")
    evaluate(api, {"data": DATA.tolist(), "candidates": CANDIDATES}, "calm")
    assert snapshot(api, "calm") == before


def test_multipart_with_a_npy_file_and_a_spec_part(api):
    spec = {"candidates": CANDIDATES[:3], "target": {"min_sqnr_db": 25}}
    buf = io.BytesIO()
    np.save(buf, DATA)
    buf.seek(0)
    buf.name = "w.npy"
    response = Client().post("/instances/default/evaluate", {"file": buf, "spec": json.dumps(spec)})
    body = ok(response)
    json_body = evaluate(api, {"data": DATA.tolist(), **spec})
    strip = [{k: v for k, v in r.items() if k != "ms"} for r in body["candidates"]]
    assert strip == [{k: v for k, v in r.items() if k != "ms"} for r in json_body["candidates"]]
    assert body["target"] == json_body["target"]


def test_multipart_without_spec_runs_the_grid_without_target(api):
    buf = io.BytesIO()
    np.save(buf, DATA[:2, :8])
    buf.seek(0)
    buf.name = "w.npy"
    body = ok(Client().post("/instances/default/evaluate", {"file": buf}))
    assert len(body["candidates"]) == GRID_SIZE
    assert body["recommended"] is None


@override_settings(QUANTIZER_MAX_ELEMENTS=len(CANDIDATES) * DATA.size - 1)
def test_values_times_candidates_beyond_the_limit_is_413_before_computing(api, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a candidate ran")
    monkeypatch.setattr(sys.modules["engine.evaluation"], "run_candidate", refuse)
    assert_error(api.post("/instances/default/evaluate", {"data": DATA.tolist(), "candidates": CANDIDATES}), 413,
                 code="input.too_large", field="candidates")
    # the grid counts its candidates too
    assert_error(api.post("/instances/default/evaluate", {"data": DATA.tolist()}), 413, field="candidates")


@pytest.mark.parametrize(("body", "field"), [
    ({"candidates": [{"quantization_type": "INT8"}, {"num_bits": 40}]}, "candidates[1].num_bits"),
    ({"candidates": [{"colour": "red"}]}, "candidates[0].colour"),
    ({"candidates": []}, "candidates"),
    ({"candidates": ["INT8"]}, "candidates"),
    ({"target": {"min_sqnr_db": "30"}}, "target"),
    ({"target": {"min_sqnr": 30}}, "target"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_requests_are_400_and_change_nothing(api, body, field):
    before = snapshot(api, "default")
    error = assert_error(api.post("/instances/default/evaluate", {"data": DATA.tolist(), **body}), 400)
    assert error.get("field", "").startswith(field)
    assert snapshot(api, "default") == before


def test_a_grouped_calibrated_candidate_runs(api):
    """A grouped candidate is calibrated one range per block (it was refused before grouped calibration
    existed): its row reports a finite SQNR."""
    body = ok(api.post("/instances/default/evaluate", {"data": DATA.tolist(), "candidates": [
        {"quantization_type": "INT4", "group_size": 16, "quantization_mode": "CALIBRATED"}]}))
    (row,) = body["candidates"]
    assert row["config"]["group_size"] == 16
    assert row["sqnr_db"] is not None
    assert row["sqnr_db"] > 10


def test_evaluate_of_an_unknown_instance_is_404(api):
    assert_error(api.post("/instances/ghost/evaluate", {"data": DATA.tolist()}), 404, code="instance.not_found")


def test_multipart_refusals(api):
    before = snapshot(api, "default")
    buf = io.BytesIO()
    np.save(buf, DATA)
    for spec, field in (("{not json", "spec"), ('{"target": {"min_sqnr_db": "x"}}', "target")):
        buf.seek(0)
        buf.name = "w.npy"
        error = assert_error(Client().post("/instances/default/evaluate", {"file": buf, "spec": spec}), 400)
        assert error["field"].startswith(field)
    assert_error(Client().post("/instances/default/evaluate", {"spec": "{}"}), 400, field="file")
    assert snapshot(api, "default") == before
