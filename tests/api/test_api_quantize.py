"""quantize, dequantize, quantize_dequantize: values against independent references, modes, state, formats."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client

from quantizers import registry
from tests.api.helpers import (
    CASES,
    F32,
    NPY,
    RECORDS,
    SPEC_CODES,
    SPEC_DATA,
    SPEC_SYMMETRIC,
    assert_bits_equal,
    assert_error,
    create,
    import_record,
    load_npy,
    ok,
    onnx_dequantize,
    onnx_qparams,
    onnx_quantize,
    record_kind,
    representative,
    snapshot,
)

SLASHES = pytest.mark.parametrize("slash", ["", "/"])
OPERATIONS = ("quantize", "dequantize", "quantize_dequantize")


def record_ids(pairs):
    seen: dict[str, int] = {}
    out = []
    for _, r in pairs:
        seen[r["id"]] = seen.get(r["id"], 0) + 1
        out.append(r["id"] if seen[r["id"]] == 1 else f"{r['id']}#{seen[r['id']]}")
    return out


def case_data(case):
    return np.asarray(case["x"], dtype=F32).reshape(case["shape"])


# ---------------------------------------------------------------------------- the reference helpers themselves
ORT_RECORDS = [(c, r) for c, r in RECORDS if r["qparams_source"] == "ort_compute_scale_zp"]


@pytest.mark.parametrize(("case", "record"), ORT_RECORDS, ids=record_ids(ORT_RECORDS))
def test_the_hand_written_onnx_formulas_reproduce_onnx_runtime(case, record):
    """helpers.onnx_* (used for hand-derived expectations below) agree with ONNX Runtime to the bit."""
    x = case_data(case)
    axis = record["axis"]
    if axis is None:
        lo, hi = x.min(), x.max()
        bshape = ()
    else:
        others = tuple(i for i in range(x.ndim) if i != axis)
        lo, hi = x.min(axis=others), x.max(axis=others)
        bshape = [1] * x.ndim
        bshape[axis] = -1
    scale, zp = onnx_qparams(lo, hi, record["calib_quant_min"], record["calib_quant_max"],
                             record["scheme"] == "symmetric")
    assert_bits_equal(scale.reshape(-1), np.asarray(record["scale"], F32).reshape(-1))
    assert zp.reshape(-1).tolist() == np.asarray(record["zero_point"]).reshape(-1).tolist()
    q = onnx_quantize(x, scale.reshape(bshape), zp.reshape(bshape), record["type_quant_min"],
                      record["type_quant_max"])
    assert q.reshape(-1).tolist() == record["q"]
    assert_bits_equal(onnx_dequantize(q, scale.reshape(bshape), zp.reshape(bshape)).reshape(-1), record["dq"])


# ---------------------------------------------------------------------------- hand-derived values
@SLASHES
def test_spec_example_on_a_symmetric_int8_instance(api, slash):
    create(api, "sym", SPEC_SYMMETRIC)
    body = ok(api.post(f"/instances/sym/quantize{slash}", {"data": SPEC_DATA, "validate": True}))
    assert body == {"data": SPEC_CODES, "quantization_type": "INT8", "original_shape": [2, 3]}
    # dequantize: (q - 0) * float32(9/127)
    scale = F32(np.float64(F32(9.0)) / 127)
    expected = onnx_dequantize(SPEC_CODES, scale, 0)
    body = ok(api.post(f"/instances/sym/dequantize{slash}", {"data": SPEC_CODES}))
    assert set(body) == {"data", "original_shape"}
    assert body["original_shape"] == [2, 3]
    assert_bits_equal(body["data"], expected)
    body = ok(api.post(f"/instances/sym/quantize_dequantize{slash}", {"data": SPEC_DATA}))
    assert set(body) == {"data", "original_shape"}
    assert body["original_shape"] == [2, 3]
    assert_bits_equal(body["data"], expected)


def test_asymmetric_int8_on_minus_one_to_five(api):
    """The default instance (asymmetric INT8, DYNAMIC), by hand:
    range [-1, 5]; scale = float32(6 / 255) = 0.023529412;
    zp = rint(float32(-128) - float32(-1) / scale) = rint(-128 + 42.5) = rint(-85.5) = -86 (half to even;
    -1/scale is exactly 42.5 in float32);
    codes: -1 -> rint(-42.5) - 86 = -42 - 86 = -128;  0 -> -86;  2 -> rint(85.0) - 86 = -1;
            5 -> rint(212.5) - 86 = 212 - 86 = 126."""
    scale = F32(np.float64(6.0) / 255.0)
    assert scale == F32(0.023529412)
    assert F32(-1.0) / scale == F32(42.5) * -1
    zp = int(np.rint(F32(-128) - F32(-1.0) / scale))
    assert zp == -86
    data = [[-1.0, 0.0], [2.0, 5.0]]
    codes = [[-128, -86], [-1, 126]]
    assert onnx_quantize(data, scale, zp, -128, 127).tolist() == codes

    body = ok(api.post("/instances/default/quantize", {"data": data}))
    assert body == {"data": codes, "quantization_type": "INT8", "original_shape": [2, 2]}
    stats = ok(api.get("/instances/default/stats"))
    assert_bits_equal(stats["last_scale"], scale)  # float32 values are written shortest-round-trip
    assert stats["last_zero_point"] == zp
    assert stats["clipped_values"] == 0

    # dequantize with the latest quantize's parameters: float32((q - zp) * scale)
    expected = onnx_dequantize(codes, scale, zp)
    assert_bits_equal(ok(api.post("/instances/default/dequantize", {"data": codes}))["data"], expected)
    assert_bits_equal(ok(api.post("/instances/default/quantize_dequantize", {"data": data}))["data"], expected)


def test_asymmetric_uint8_on_minus_one_to_five(api):
    """UINT8: scale = float32(6/255); zp = rint(0 - (-1)/scale) = rint(42.5) = 42 (half to even);
    -1 -> rint(-42.5) + 42 = 0;  5 -> rint(212.5) + 42 = 254."""
    create(api, "u8", {"quantization_type": "uint8"})
    scale = F32(np.float64(6.0) / 255.0)
    assert int(np.rint(F32(0) - F32(-1.0) / scale)) == 42
    body = ok(api.post("/instances/u8/quantize", {"data": [[-1.0, 5.0]]}))
    assert body == {"data": [[0, 254]], "quantization_type": "UINT8", "original_shape": [1, 2]}
    assert_bits_equal(ok(api.post("/instances/u8/dequantize", {"data": [[0, 254]]}))["data"],
                      onnx_dequantize([[0, 254]], scale, 42))


def test_symmetric_uint8_has_zero_point_128(api):
    """Symmetric unsigned: amax = 2, scale = float32(2*2/255) = 0.015686275, zp = (0 + 255 + 1) / 2 = 128.
    In float32, 2 / scale = 127.49999 (scale was rounded up), so:
    -2 -> rint(-127.49999) + 128 = -127 + 128 = 1;  2 -> 127 + 128 = 255;  0.5 -> rint(31.874998) + 128 = 160."""
    create(api, "u8s", {"quantization_type": "UINT8", "symmetric": True})
    scale = F32(np.float64(4.0) / 255.0)
    assert (F32(2.0) / scale, F32(0.5) / scale) == (F32(127.49999), F32(31.874998))
    body = ok(api.post("/instances/u8s/quantize", {"data": [[-2.0, 2.0, 0.5]]}))
    assert body["data"] == [[1, 255, 160]]
    stats = ok(api.get("/instances/u8s/stats"))
    assert_bits_equal(stats["last_scale"], scale)
    assert stats["last_zero_point"] == 128
    assert stats["clipped_values"] == 0


def test_symmetric_int16(api):
    """INT16 symmetric: amax = 3, scale = float32(3/32767); -3 -> -32767 (narrow range), 1.5 -> rint(16383.5)
    = 16384 (half to even)."""
    create(api, "i16", {"quantization_type": "INT16", "symmetric": True})
    scale = F32(np.float64(3.0) / 32767.0)
    expected = onnx_quantize([[-3.0, 1.5, 0.0]], scale, 0, -32768, 32767)
    assert expected.tolist() == [[-32767, 16384, 0]]
    body = ok(api.post("/instances/i16/quantize", {"data": [[-3.0, 1.5, 0.0]]}))
    assert body == {"data": [[-32767, 16384, 0]], "quantization_type": "INT16", "original_shape": [1, 3]}


def test_four_bit_int8_saturates_to_its_own_range(api):
    """num_bits 4: qmin/qmax = -8/7; symmetric: amax 7, scale = 7/7 = 1.0; -7 -> -7, 3.5 -> rint(3.5) = 4."""
    create(api, "int4", {"quantization_type": "INT8", "num_bits": 4, "symmetric": True})
    assert ok(api.post("/instances/int4/quantize", {"data": [[-7.0, 3.5, 7.0]]}))["data"] == [[-7, 4, 7]]
    assert_error(api.post("/instances/int4/dequantize", {"data": [[8]]}), 400, code="input.code_out_of_range",
                 field="data")
    assert_error(api.post("/instances/int4/dequantize", {"data": [[-9]]}), 400, code="input.code_out_of_range")
    assert ok(api.post("/instances/int4/dequantize", {"data": [[-8, 7]]}))["data"] == [[-8.0, 7.0]]


def test_symmetric_mode_forces_symmetric_parameters(api):
    create(api, "symmode", {"quantization_mode": "symmetric", "symmetric": False})
    assert ok(api.post("/instances/symmode/quantize", {"data": SPEC_DATA}))["data"] == SPEC_CODES


def test_dynamic_per_batch_gives_each_row_its_own_parameters(api):
    """Row 0 [0, 2.55] and row 1 [-1, 5], asymmetric UINT8, each row its own range:
    row 0: scale = float32(2.55/255), zp = 0 -> codes rint(x/scale) = [0, 255];
    row 1: scale = float32(6/255), zp = 42 (see the UINT8 test) -> [0, 254]."""
    create(api, "batch", {"quantization_type": "UINT8", "quantization_mode": "DYNAMIC_PER_BATCH"})
    data = [[0.0, 2.55], [-1.0, 5.0]]
    s0, z0 = onnx_qparams(F32(0.0), F32(2.55), 0, 255, False)
    s1, z1 = onnx_qparams(F32(-1.0), F32(5.0), 0, 255, False)
    expected = [onnx_quantize(data[0], s0, z0, 0, 255).tolist(), onnx_quantize(data[1], s1, z1, 0, 255).tolist()]
    assert expected == [[0, 255], [0, 254]]
    assert ok(api.post("/instances/batch/quantize", {"data": data}))["data"] == expected
    stats = ok(api.get("/instances/batch/stats"))
    assert_bits_equal(stats["last_channel_scales"], [s0, s1])
    assert stats["last_channel_zero_points"] == [int(z0), int(z1)]


@pytest.mark.parametrize(("mode", "config"), [
    ("DYNAMIC_PER_CHANNEL", {"quantization_mode": "DYNAMIC_PER_CHANNEL"}),
    ("per_channel flag", {"per_channel": True}),
])
@pytest.mark.parametrize("channel_dim", [0, 1, -1, -2])
def test_per_channel_along_channel_dim(api, mode, config, channel_dim):
    create(api, "pc", {"quantization_type": "INT8", "symmetric": True, **config})
    data = np.asarray([[1.0, -2.0, 4.0], [0.5, 8.0, -1.0]], F32)
    axis = channel_dim % 2
    amax = np.abs(data).max(axis=1 - axis)
    scale = (amax.astype(np.float64) / 127).astype(F32)  # symmetric: amax / qmax per channel
    shape = [1, 1]
    shape[axis] = -1
    expected = onnx_quantize(data, scale.reshape(shape), 0, -128, 127)
    body = ok(api.post("/instances/pc/quantize", {"data": data.tolist(), "channel_dim": channel_dim}))
    assert body["data"] == expected.tolist()
    stats = ok(api.get("/instances/pc/stats"))
    assert_bits_equal(stats["last_channel_scales"], scale)
    assert stats["last_channel_zero_points"] == [0] * scale.size
    registry.active().clear()
    dq = ok(api.post("/instances/pc/dequantize", {"data": body["data"], "channel_dim": channel_dim}))["data"]
    assert_bits_equal(dq, onnx_dequantize(expected, scale.reshape(shape), 0))


@pytest.mark.parametrize("channel_dim", [2, -3, 100, -100])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_channel_dim_out_of_range_is_400(api, channel_dim, operation):
    ok(api.post("/instances/default/quantize", {"data": [[1.0, 2.0]]}))
    before = snapshot(api, "default")
    body = {"data": [[1, 2], [3, 4]], "channel_dim": channel_dim}
    assert_error(api.post(f"/instances/default/{operation}", body), 400, field="channel_dim")
    assert snapshot(api, "default") == before


# ---------------------------------------------------------------------------- reference vectors, through HTTP
# Every record is checked to the bit on the engine (tests/engine/test_reference_vectors.py); here one record of
# each kind (type, per-tensor / per-channel on each axis, affine / symmetric / explicit, reduce_range) proves the
# HTTP wiring: parameters imported or computed, values through JSON and back, stats, another worker.
STATIC_SAMPLE = representative(RECORDS)
DYNAMIC_RECORDS = [(c, r) for c, r in ORT_RECORDS if not r["reduce_range"]]
DYNAMIC_SAMPLE = representative(DYNAMIC_RECORDS)
# FLOAT16 casts of every case are checked on the engine; through HTTP an ordinary case, and the one whose casts
# hold half-precision subnormals and -0.0 (which JSON must carry to the bit).
FLOAT16_CASES = [c for c in CASES if c["name"] in ("gaussian", "tiny_range")]


def test_the_http_samples_cover_every_kind_of_record():
    assert {record_kind(r) for _, r in STATIC_SAMPLE} == {record_kind(r) for _, r in RECORDS}
    assert len(STATIC_SAMPLE) == len({record_kind(r) for _, r in RECORDS}) == 20
    assert {r["dtype"] for _, r in STATIC_SAMPLE} == {"int8", "uint8", "int16"}
    assert {r["axis"] for _, r in STATIC_SAMPLE} == {None, 0, 1}
    assert {r["scheme"] for _, r in STATIC_SAMPLE} == {"affine", "symmetric", "explicit"}
    assert any(r["reduce_range"] for _, r in STATIC_SAMPLE)
    assert any(r["n_clipped"] for _, r in STATIC_SAMPLE)
    assert {record_kind(r) for _, r in DYNAMIC_SAMPLE} == {record_kind(r) for _, r in DYNAMIC_RECORDS}
    assert len(DYNAMIC_SAMPLE) == 16
    assert len({c["name"] for c, _ in STATIC_SAMPLE + DYNAMIC_SAMPLE}) >= 10  # spread over the cases too
    assert len(FLOAT16_CASES) == 2


@pytest.mark.parametrize(("case", "record"), STATIC_SAMPLE, ids=record_ids(STATIC_SAMPLE))
def test_static_instance_with_imported_reference_parameters(api, case, record):
    """A record's scale and zero point imported into a STATIC instance: /quantize gives the record's codes,
    /dequantize and /quantize_dequantize its dequantized values to the float32 bit, the clipped count its own."""
    import_record(api, "ref", record)
    x = case_data(case)
    q_expected = np.asarray(record["q"]).reshape(case["shape"]).tolist()

    body = ok(api.post("/instances/ref/quantize", {"data": x.tolist()}))
    assert body["data"] == q_expected
    assert body["quantization_type"] == record["dtype"].upper()
    assert body["original_shape"] == list(case["shape"])
    registry.active().clear()  # another worker
    dq = ok(api.post("/instances/ref/dequantize", {"data": q_expected}))["data"]
    assert_bits_equal(np.asarray(dq).reshape(-1), record["dq"])
    fake = ok(api.post("/instances/ref/quantize_dequantize", {"data": x.tolist()}))["data"]
    assert_bits_equal(np.asarray(fake).reshape(-1), record["dq"])
    stats = ok(api.get("/instances/ref/stats"))
    assert stats["clipped_values"] == 2 * record["n_clipped"]
    assert stats["total_values"] == 2 * x.size
    assert (stats["quantize_calls"], stats["dequantize_calls"]) == (2, 2)


@pytest.mark.parametrize(("case", "record"), DYNAMIC_SAMPLE, ids=record_ids(DYNAMIC_SAMPLE))
def test_dynamic_instance_computes_onnx_runtime_parameters(api, case, record):
    """A DYNAMIC instance (the record's type, symmetry and granularity) quantizes to ONNX Runtime's codes, and a
    fresh worker dequantizes them with the parameters that quantize stored."""
    per_channel = record["axis"] is not None
    create(api, "dyn", {"quantization_type": record["dtype"], "symmetric": record["scheme"] == "symmetric",
                        "per_channel": per_channel, "qparams_rule": "ort_tooling"})
    x = case_data(case)
    q_expected = np.asarray(record["q"]).reshape(case["shape"]).tolist()
    body = ok(api.post("/instances/dyn/quantize", {"data": x.tolist(), "channel_dim": record["axis"]}))
    assert body["data"] == q_expected
    stats = ok(api.get("/instances/dyn/stats"))
    assert stats["clipped_values"] == record["n_clipped"]
    if per_channel:
        assert_bits_equal(stats["last_channel_scales"], record["scale"])
        assert stats["last_channel_zero_points"] == record["zero_point"]
    else:
        assert_bits_equal(stats["last_scale"], record["scale"])
        assert stats["last_zero_point"] == record["zero_point"]
        assert stats["last_channel_scales"] is None
    registry.active().clear()
    dq = ok(api.post("/instances/dyn/dequantize", {"data": q_expected, "channel_dim": record["axis"]}))["data"]
    assert_bits_equal(np.asarray(dq).reshape(-1), record["dq"])
    fake = ok(api.post("/instances/dyn/quantize_dequantize", {"data": x.tolist(), "channel_dim": record["axis"]}))
    assert_bits_equal(np.asarray(fake["data"]).reshape(-1), record["dq"])


@pytest.mark.parametrize("case", FLOAT16_CASES, ids=[c["name"] for c in FLOAT16_CASES])
def test_float16_matches_the_reference_cast(api, case):
    create(api, "half", {"quantization_type": "float16"})
    x = case_data(case)
    expected = np.asarray(case["casts"]["float16"], F32)
    body = ok(api.post("/instances/half/quantize", {"data": x.tolist()}))
    assert body["quantization_type"] == "FLOAT16"
    assert_bits_equal(np.asarray(body["data"]).reshape(-1), expected)
    fake = ok(api.post("/instances/half/quantize_dequantize", {"data": x.tolist()}))["data"]
    assert_bits_equal(np.asarray(fake).reshape(-1), expected)


def test_none_type_passes_values_through(api):
    create(api, "none", {"quantization_type": "NONE"})
    data = [[0.1, -3.25, 1e30]]
    body = ok(api.post("/instances/none/quantize", {"data": data}))
    assert body["quantization_type"] == "NONE"
    assert_bits_equal(body["data"], data)
    assert_bits_equal(ok(api.post("/instances/none/dequantize", {"data": data}))["data"], data)


def test_a_skipped_layer_passes_through_as_none(api):
    create(api, "layers", {**SPEC_SYMMETRIC, "skip_layers": ["head"]})
    body = ok(api.post("/instances/layers/quantize", {"data": SPEC_DATA, "layer_name": "head"}))
    assert body["quantization_type"] == "NONE"
    assert_bits_equal(body["data"], SPEC_DATA)
    assert ok(api.post("/instances/layers/quantize", {"data": SPEC_DATA, "layer_name": "body"}))["data"] == SPEC_CODES


# ---------------------------------------------------------------------------- state: modes and conflicts
@pytest.mark.parametrize("mode", ["STATIC", "static", "CALIBRATED", "calibrated"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_static_and_calibrated_modes_need_parameters_first(api, mode, operation):
    create(api, "frozen", {"quantization_mode": mode})
    before = snapshot(api, "frozen")
    data = [[1, 2]] if operation == "dequantize" else [[1.0, 2.0]]
    body = assert_error(api.post(f"/instances/frozen/{operation}", {"data": data}), 409, code="state.not_calibrated")
    assert mode.upper() in body["detail"]
    assert snapshot(api, "frozen") == before
    # after importing parameters the same request succeeds: scale 0.5, zp 0 -> 1.0 -> 2, 2.0 -> 4
    ok(api.post("/instances/frozen/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 0}}))
    expected = {"quantize": [[2, 4]], "dequantize": [[0.5, 1.0]], "quantize_dequantize": [[1.0, 2.0]]}[operation]
    assert ok(api.post(f"/instances/frozen/{operation}", {"data": data}))["data"] == expected


def test_dynamic_dequantize_before_any_quantize_is_409(api):
    before = snapshot(api, "default")
    assert_error(api.post("/instances/default/dequantize", {"data": [[1, 2]]}), 409, code="state.not_calibrated")
    assert snapshot(api, "default") == before


def test_dynamic_dequantize_uses_the_latest_quantize_in_any_worker(api, workers):
    """Worker a quantizes [-1, 5] (scale 6/255, zp -86), then worker b quantizes [0, 2.55] (scale 0.01, zp -128);
    both dequantize with the latest, b's, parameters."""
    with workers("a"):
        ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))
    with workers("b"):
        ok(api.post("/instances/default/quantize", {"data": [[0.0, 2.55]]}))
    scale, zp = onnx_qparams(F32(0.0), F32(2.55), -128, 127, False)
    assert int(zp) == -128
    expected = onnx_dequantize([[-128, 0, 127]], scale, zp)
    for name in ("a", "b", "c"):
        with workers(name):
            assert_bits_equal(ok(api.post("/instances/default/dequantize", {"data": [[-128, 0, 127]]}))["data"],
                              expected)


def test_dynamic_quantize_then_dequantize_after_a_restart_gives_the_same_values(api):
    data = [[0.3, -1.7, 2.9], [4.4, -0.01, 0.0]]
    codes = ok(api.post("/instances/default/quantize", {"data": data}))["data"]
    here = ok(api.post("/instances/default/dequantize", {"data": codes}))["data"]
    registry.active().clear()  # another worker, which never saw the quantize
    there = ok(api.post("/instances/default/dequantize", {"data": codes}))["data"]
    assert_bits_equal(there, here)
    lo, hi = np.asarray(data, F32).min(), np.asarray(data, F32).max()
    scale, zp = onnx_qparams(lo, hi, -128, 127, False)
    assert codes == onnx_quantize(data, scale, zp, -128, 127).tolist()
    assert_bits_equal(there, onnx_dequantize(codes, scale, zp))


def test_dynamic_dequantize_still_works_after_reset_stats(api):
    codes = ok(api.post("/instances/default/quantize", {"data": [[-1.0, 5.0]]}))["data"]
    ok(api.post("/instances/default/reset_stats"))
    registry.active().clear()
    scale = F32(np.float64(6.0) / 255.0)
    assert_bits_equal(ok(api.post("/instances/default/dequantize", {"data": codes}))["data"],
                      onnx_dequantize(codes, scale, -86))


# ---------------------------------------------------------------------------- request options
def test_validate_false_skips_the_clipped_count(api):
    ok(api.post("/instances/default/parameters", {"parameters": {"global_scale": 0.1, "global_zero_point": 0}}))
    # 100 / 0.1 = 1000 -> 127 and -100 -> -128: two values saturate
    body = ok(api.post("/instances/default/quantize", {"data": [[100.0, 1.0, -100.0]], "validate": False}))
    assert body["data"] == [[127, 10, -128]]
    assert ok(api.get("/instances/default/stats"))["clipped_values"] == 0
    ok(api.post("/instances/default/quantize", {"data": [[100.0, 1.0, -100.0]], "validate": True}))
    assert ok(api.get("/instances/default/stats"))["clipped_values"] == 2


@pytest.mark.parametrize(("body", "field"), [
    ({"data": [[1.0]], "validate": "false"}, "validate"),
    ({"data": [[1.0]], "validate": 0}, "validate"),
    ({"data": [[1.0]], "validate": None}, "validate"),
    ({"data": [[1.0]], "channel_dim": "0"}, "channel_dim"),
    ({"data": [[1.0]], "channel_dim": 0.0}, "channel_dim"),
    ({"data": [[1.0]], "channel_dim": True}, "channel_dim"),
    ({"data": [[1.0]], "layer_name": 5}, "layer_name"),
    ({"data": [[1.0]], "layer_name": ["a"]}, "layer_name"),
    ({"data": [[1.0]], "layer_name": "x" * 257}, "layer_name"),
    ({"data": [[1.0]], "unknown": 1}, "unknown"),
    ({"data": [[1.0]], "channel_idx": 0}, "channel_idx"),
    ({}, "data"),
    ({"data": None}, "data"),
])
@pytest.mark.parametrize("operation", ["quantize", "quantize_dequantize"])
def test_bad_options_are_400_naming_the_field(api, body, field, operation):
    before = snapshot(api, "default")
    assert_error(api.post(f"/instances/default/{operation}", body), 400, field=field)
    assert snapshot(api, "default") == before


def test_dequantize_takes_no_validate_option(api):
    ok(api.post("/instances/default/quantize", {"data": [[1.0, 2.0]]}))
    assert_error(api.post("/instances/default/dequantize", {"data": [[1]], "validate": True}), 400, field="validate")


@pytest.mark.parametrize(("qtype", "codes"), [
    ("INT8", [[-129]]), ("INT8", [[128]]), ("INT8", [[0, 1000]]), ("INT8", [[-(2**63)]]), ("INT8", [[2**63 - 1]]),
    ("UINT8", [[-1]]), ("UINT8", [[256]]), ("INT16", [[32768]]), ("INT16", [[-32769]]),
])
def test_dequantize_codes_outside_the_type_range_are_400(api, qtype, codes):
    create(api, "codes", {"quantization_type": qtype, "quantization_mode": "STATIC"})
    ok(api.post("/instances/codes/parameters", {"parameters": {"global_scale": 1.0, "global_zero_point": 0}}))
    before = snapshot(api, "codes")
    assert_error(api.post("/instances/codes/dequantize", {"data": codes}), 400, code="input.code_out_of_range",
                 field="data")
    assert snapshot(api, "codes") == before


@pytest.mark.parametrize("codes", [[[1.5, 2]], [[0.1]], [[True, 1]], [["1"]], [[None]]])
def test_dequantize_codes_must_be_integers(api, codes):
    ok(api.post("/instances/default/quantize", {"data": [[1.0, 2.0]]}))
    before = snapshot(api, "default")
    assert_error(api.post("/instances/default/dequantize", {"data": codes}), 400, field="data")
    assert snapshot(api, "default") == before


def test_dequantize_accepts_integral_floats_as_codes(api):
    ok(api.post("/instances/default/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 0}}))
    assert ok(api.post("/instances/default/dequantize", {"data": [[2.0, -4.0]]}))["data"] == [[1.0, -2.0]]


# ---------------------------------------------------------------------------- Accept: application/x-npy
@pytest.mark.parametrize(("operation", "body", "dtype", "expected"), [
    ("quantize", {"data": SPEC_DATA}, np.int8, SPEC_CODES),
    ("dequantize", {"data": [[127, -127]]}, np.float32, [[9.0, -9.0]]),
    ("quantize_dequantize", {"data": [[9.0, -9.0]]}, np.float32, [[9.0, -9.0]]),
])
def test_json_requests_answer_npy_when_asked(api, operation, body, dtype, expected):
    create(api, "sym", SPEC_SYMMETRIC)
    ok(api.post("/instances/sym/quantize", {"data": SPEC_DATA}))  # amax 9 -> scale 9/127 for dequantize
    response = api.post(f"/instances/sym/{operation}", body, HTTP_ACCEPT=NPY)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == NPY
    array = load_npy(response.content)
    assert array.dtype == dtype
    if dtype == np.float32:
        # 127 * float32(9/127) rounds back to 9.0 in float32
        assert_bits_equal(array, onnx_dequantize([[127, -127]], F32(np.float64(F32(9.0)) / 127), 0))
        assert_bits_equal(array, expected)
    else:
        assert array.tolist() == expected


def test_an_error_asked_as_npy_is_still_json(api):
    response = api.post("/instances/ghost/quantize", {"data": [[1.0]]}, HTTP_ACCEPT=NPY)
    assert_error(response, 404, code="instance.not_found")
    response = api.post("/instances/default/quantize", {"data": [[True]]}, HTTP_ACCEPT=NPY)
    assert_error(response, 400, field="data")
    response = api.post("/instances/default/dequantize", {"data": [[1]]}, HTTP_ACCEPT=NPY)
    assert_error(response, 409, code="state.not_calibrated")


def test_json_is_the_default_answer(api):
    for accept in ("application/json", "*/*", "application/*"):
        response = api.post("/instances/default/quantize", {"data": [[0.0, 1.0]]}, HTTP_ACCEPT=accept)
        assert ok(response)["quantization_type"] == "INT8"


def test_float16_dequantize_of_values_beyond_the_half_range_is_not_a_500(api):
    create(api, "half", {"quantization_type": "FLOAT16"})
    response = Client(raise_request_exception=False).post(
        "/instances/half/dequantize", {"data": [[0.1, 70000.0]]}, content_type="application/json")
    assert response.status_code < 500, response.content[:300]


def test_float16_overflow_is_counted_and_never_written_as_infinity(api):
    create(api, "half", {"quantization_type": "FLOAT16"})
    body = ok(api.post("/instances/half/quantize", {"data": [[0.1, 70000.0, -1e6]]}))  # strict JSON
    assert_bits_equal(body["data"][0][0], np.float16(0.1))
    assert ok(api.get("/instances/half/stats"))["clipped_values"] == 2  # beyond +-65504: saturated to +-inf
