"""The number formats on the wire (docs/api.md, Array formats): INT4 / UINT4 codes packed two per byte in raw
bytes and one per byte in .npy, FP8 and BFLOAT16 as their bit patterns, X-Dtype naming the type, X-Shape the
logical shape; block and FP8 parameters in headers and .npz; bodies of these types sent to the service.

Expected values come from tests/data/formats_vectors.json (ONNX Runtime, onnx, ml_dtypes, PyTorch) or from
ml_dtypes and the ONNX packing rule written out here, never from the code under test. A sample of each section of
the records goes through HTTP; every record is proven on the engine in tests/engine/test_formats_vectors.py."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from tests.api.helpers import assert_error, create, load_npy, npy_bytes, ok, upload

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "formats_vectors.json").read_text())
LENIENT = {"error_on_nan": False, "error_on_inf": False}
NPY, BIN, NPZ = "application/x-npy", "application/octet-stream", "application/x-npz"
ML_DTYPES = {"float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}
FP8_TYPE = {"float8_e4m3fn": "FP8_E4M3", "float8_e5m2": "FP8_E5M2"}


# ---------------------------------------------------------------------------- the records' encoding
def f32s(v: Any) -> np.ndarray:
    """float32 values from the records' encoding (meta.float_encoding)."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["value"]), dtype="<f4").astype(np.float32)
    items = v if isinstance(v, list) else [v]
    out = np.empty(len(items), np.float32)
    for i, item in enumerate(items):
        if isinstance(item, str) and item.startswith("nan:"):
            out.view(np.uint32)[i] = int(item[4:], 16)
        else:
            out[i] = np.float32(item)
    return out


def ints(v: Any) -> np.ndarray:
    if isinstance(v, dict):
        kind = {"b64u8": "|u1", "b64i8": "|i1", "b64u16": "<u2"}[v["encoding"]]
        return np.frombuffer(base64.b64decode(v["value"]), dtype=kind).astype(np.int64)
    return np.asarray(v, np.int64).reshape(-1)


def case_x(case: dict[str, Any]) -> np.ndarray:
    return f32s(case["x"]).reshape(case["shape"])


def same_bits(a: Any, b: Any) -> bool:
    a32, b32 = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    return a32.shape == b32.shape and bool(np.array_equal(a32.view(np.uint32), b32.view(np.uint32)))


def binary(response: Any) -> bytes:
    assert response.status_code == 200, (response.status_code, response.content[:500])
    return bytes(response.content)


def post(api: Any, path: str, body: bytes, content_type: str = NPY, accept: str = NPY, **headers: Any) -> Any:
    return api.raw("post", path, body, content_type, HTTP_ACCEPT=accept, **headers)


def load_npz(content: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def find(section: str, case_id: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    case = next(c for c in VECTORS[section]["cases"] if c["id"] == case_id)
    record = next(r for r in case["records"] if all(r.get(k) == v for k, v in fields.items()))
    return case, record


def import_int4(api: Any, name: str, record: dict[str, Any]) -> None:
    """A STATIC instance holding an int4 record's parameters (per tensor, per axis or per block)."""
    config: dict[str, Any] = {"quantization_type": record["dtype"].upper(), "quantization_mode": "STATIC",
                              **LENIENT}
    scale, zp = record["scale"], record["zero_point"]
    if record["granularity"] == "per_tensor":
        params: dict[str, Any] = {"global_scale": scale, "global_zero_point": zp}
    elif record["granularity"] == "per_axis":
        config["per_channel"] = True
        params = {"per_channel_scales": scale, "per_channel_zero_points": zp, "channel_dim": record["axis"]}
    else:
        config["group_size"] = record["block_size"]
        params = {"block_scales": scale, "block_zero_points": zp, "block_size": record["block_size"],
                  "block_axis": record["axis"]}
    create(api, name, config)
    ok(api.post(f"/instances/{name}/parameters", {"parameters": params}))


def onnx_pack(codes: Any) -> bytes:
    """ONNX int4 packing (meta.formulas.int4_packing): element 2i in the low nibble, 2i+1 in the high one."""
    nibbles = [int(c) & 0xF for c in np.asarray(codes).reshape(-1)]
    nibbles += [0] * (len(nibbles) % 2)
    return bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))


# ---------------------------------------------------------------------------- int4 / uint4
PACKED = [("adv_odd_count_7", {"dtype": "int4", "granularity": "per_axis"}),
          ("rand_3_normal_8x128", {"dtype": "int4", "granularity": "blocked", "axis": 1, "block_size": 16}),
          ("rand_0_normal_64x20", {"dtype": "uint4", "granularity": "blocked", "axis": 1, "block_size": 16})]


@pytest.mark.parametrize(("case_id", "fields"), PACKED, ids=[f"{c}-{f['dtype']}" for c, f in PACKED])
def test_int4_raw_bytes_are_the_records_packed_bytes(api, case_id, fields):
    case, record = find("int4", case_id, **fields)
    assert record["packed"]["all_equal"]
    import_int4(api, "i4", record)
    axis = "" if record["axis"] is None else f"?channel_dim={record['axis']}"
    response = post(api, f"/instances/i4/quantize{axis}", npy_bytes(case_x(case)), accept=BIN)
    assert binary(response) == bytes.fromhex(record["packed"]["onnx_numpy_helper_from_array"])
    assert response["X-Dtype"] == record["dtype"]
    assert response["X-Shape"] == ",".join(str(n) for n in case["shape"])  # the logical (unpacked) shape


def test_int4_npy_answer_is_one_code_per_byte(api):
    case, record = find("int4", "rand_3_normal_8x128", dtype="int4", granularity="blocked", axis=1, block_size=16)
    import_int4(api, "i4", record)
    response = post(api, "/instances/i4/quantize?channel_dim=1", npy_bytes(case_x(case)))
    codes = load_npy(binary(response))
    assert codes.dtype == np.int8
    assert codes.shape == (8, 128)
    np.testing.assert_array_equal(codes.reshape(-1), ints(record["codes"]))
    assert response["X-Dtype"] == "int4"
    # JSON: the same codes as integers
    body = ok(api.post("/instances/i4/quantize", {"data": case_x(case).tolist(), "channel_dim": 1}))
    np.testing.assert_array_equal(np.asarray(body["data"]).reshape(-1), ints(record["codes"]))


def test_uint4_npy_answer_is_uint8(api):
    case, record = find("int4", "adv_ties_quarter", dtype="uint4", granularity="per_axis", axis=1)
    import_int4(api, "u4", record)
    response = post(api, "/instances/u4/quantize?channel_dim=1", npy_bytes(case_x(case)))
    codes = load_npy(binary(response))
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes.reshape(-1), ints(record["codes"]))
    assert response["X-Dtype"] == "uint4"


def test_blocked_parameters_in_headers_and_npz(api):
    """64 blocks: in the headers (C order of the scale initializer); the .npz has the initializer's shape."""
    case, record = find("int4", "rand_3_normal_8x128", dtype="int4", granularity="blocked", axis=1, block_size=16)
    import_int4(api, "i4", record)
    response = post(api, "/instances/i4/quantize?channel_dim=1", npy_bytes(case_x(case)), accept=NPZ)
    scale = np.asarray(record["scale"], np.float32)
    assert scale.shape == (8, 8)  # ceil(128 / 16) along axis 1
    assert response["X-Block-Size"] == "16"
    assert response["X-Channel-Dim"] == "1"
    assert same_bits(f32s(response["X-Scale"].split(",")), scale)
    zero_points = np.asarray(record["zero_point"]).reshape(-1).tolist()
    assert [int(z) for z in response["X-Zero-Point"].split(",")] == zero_points
    assert "X-Parameters-Omitted" not in response
    members = load_npz(binary(response))
    assert set(members) == {"data", "scale", "zero_point", "axis", "block_size"}
    assert same_bits(members["scale"], scale)
    assert members["scale"].shape == (8, 8)
    np.testing.assert_array_equal(members["zero_point"], np.asarray(record["zero_point"]))
    assert int(members["block_size"]) == 16
    assert int(members["axis"]) == 1
    np.testing.assert_array_equal(members["data"].reshape(-1), ints(record["codes"]))


def test_more_than_64_blocks_are_omitted_from_headers(api):
    case, record = find("int4", "rand_0_normal_64x20", dtype="uint4", granularity="blocked", axis=1, block_size=16)
    import_int4(api, "u4", record)
    response = post(api, "/instances/u4/quantize?channel_dim=1", npy_bytes(case_x(case)), accept=BIN)
    assert response["X-Block-Size"] == "16"
    assert response["X-Parameters-Omitted"].startswith("128 blocks")
    assert "X-Scale" not in response
    assert "X-Zero-Point" not in response


@pytest.mark.parametrize("case_id", ["adv_odd_count_7", "rand_3_normal_8x128"])
def test_packed_int4_bodies_dequantize_to_the_records_dq(api, case_id):
    fields = {"dtype": "int4", "granularity": "per_axis"} if case_id == "adv_odd_count_7" else {
        "dtype": "int4", "granularity": "blocked", "axis": 1, "block_size": 16}
    case, record = find("int4", case_id, **fields)
    import_int4(api, "i4", record)
    packed = bytes.fromhex(record["packed"]["onnx_numpy_helper_from_array"])
    shape = ",".join(str(n) for n in case["shape"])
    response = post(api, f"/instances/i4/dequantize?channel_dim={record['axis']}", packed, BIN, NPY,
                    HTTP_X_SHAPE=shape, HTTP_X_DTYPE="int4")
    assert same_bits(load_npy(binary(response)), f32s(record["dq"]))
    # the same codes one per byte in .npy
    codes = ints(record["codes"]).astype(np.int8).reshape(case["shape"])
    response = post(api, f"/instances/i4/dequantize?channel_dim={record['axis']}", npy_bytes(codes))
    assert same_bits(load_npy(binary(response)), f32s(record["dq"]))


def test_int4_json_dequantize_takes_codes_in_range_only(api):
    create(api, "i4", {"quantization_type": "INT4", "quantization_mode": "STATIC"})
    ok(api.post("/instances/i4/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 0}}))
    assert ok(api.post("/instances/i4/dequantize", {"data": [[-8, 7, 1]]}))["data"] == [[-4.0, 3.5, 0.5]]
    assert_error(api.post("/instances/i4/dequantize", {"data": [[8]]}), 400, code="input.code_out_of_range")


# ---------------------------------------------------------------------------- float8
def fp8_record(dtype: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first per-tensor saturating record of `dtype` whose input and codes are all finite."""
    for case in VECTORS["float8"]["cases"]:
        for record in case["records"]:
            if (record["dtype"] == dtype and record["saturate"] == 1 and record["granularity"] == "per_tensor"
                    and np.isfinite(case_x(case)).all() and case_x(case).ndim == 2):
                return case, record
    raise AssertionError(dtype)


def import_fp8(api: Any, name: str, record: dict[str, Any]) -> None:
    create(api, name, {"quantization_type": FP8_TYPE[record["dtype"]], "quantization_mode": "STATIC", **LENIENT})
    ok(api.post(f"/instances/{name}/parameters", {"parameters": {"global_scale": float(f32s(record["scale"])[0]),
                                                                 "global_zero_point": 0}}))


@pytest.mark.parametrize("dtype", list(FP8_TYPE))
def test_float8_answers_are_the_records_bit_patterns(api, dtype):
    case, record = fp8_record(dtype)
    import_fp8(api, "f8", record)
    x = case_x(case)
    expected = ints(record["codes"]).astype(np.uint8)
    npy = post(api, "/instances/f8/quantize", npy_bytes(x))
    codes = load_npy(binary(npy))
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes.reshape(-1), expected)
    assert npy["X-Dtype"] == dtype
    raw = post(api, "/instances/f8/quantize", npy_bytes(x), accept=BIN)
    assert binary(raw) == expected.tobytes()
    assert raw["X-Dtype"] == dtype
    assert raw["X-Shape"] == ",".join(str(n) for n in x.shape)
    # JSON: the decoded numbers (ml_dtypes decodes the record's bits)
    body = ok(api.post("/instances/f8/quantize", {"data": x.tolist()}))
    assert same_bits(np.asarray(body["data"], np.float32), expected.view(ML_DTYPES[dtype]).astype(np.float32))


@pytest.mark.parametrize("dtype", list(FP8_TYPE))
def test_float8_has_no_zero_point_in_headers_or_npz(api, dtype):
    case, record = fp8_record(dtype)
    import_fp8(api, "f8", record)
    response = post(api, "/instances/f8/quantize", npy_bytes(case_x(case)), accept=NPZ)
    assert same_bits(f32s(response["X-Scale"]), f32s(record["scale"]))
    assert "X-Zero-Point" not in response
    members = load_npz(binary(response))
    assert set(members) == {"data", "scale"}
    assert members["data"].dtype == np.uint8
    np.testing.assert_array_equal(members["data"].reshape(-1), ints(record["codes"]))


@pytest.mark.parametrize("dtype", list(FP8_TYPE))
def test_float8_bodies_dequantize_to_the_records_dq(api, dtype):
    """uint8 bodies sent to a float8 instance are bit patterns (.npy, or raw bytes with X-Dtype float8_...)."""
    case, record = fp8_record(dtype)
    import_fp8(api, "f8", record)
    bits = ints(record["codes"]).astype(np.uint8).reshape(case["shape"])
    response = post(api, "/instances/f8/dequantize", npy_bytes(bits))
    assert same_bits(load_npy(binary(response)), f32s(record["dq"]))
    shape = ",".join(str(n) for n in case["shape"])
    for wire in (dtype, "uint8"):
        response = post(api, "/instances/f8/dequantize", bits.tobytes(), BIN, NPY, HTTP_X_SHAPE=shape,
                        HTTP_X_DTYPE=wire)
        assert same_bits(load_npy(binary(response)), f32s(record["dq"])), wire


def test_float8_json_and_float_bodies_are_values(api):
    """Only a uint8 body is read as bit patterns: JSON numbers and float .npy bodies are the float8 values."""
    create(api, "f8", {"quantization_type": "FP8_E4M3", "quantization_mode": "STATIC"})
    ok(api.post("/instances/f8/parameters", {"parameters": {"global_scale": 0.5, "global_zero_point": 0}}))
    one = np.float32(1.0).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)  # 0x38
    assert ok(api.post("/instances/f8/dequantize", {"data": [[1, 448]]}))["data"] == [[0.5, 224.0]]
    as_bits = load_npy(binary(post(api, "/instances/f8/dequantize", npy_bytes(np.array([[one]], np.uint8)))))
    assert as_bits.tolist() == [[0.5]]
    as_values = load_npy(binary(post(api, "/instances/f8/dequantize", npy_bytes(np.array([[1.0]], np.float32)))))
    assert as_values.tolist() == [[0.5]]
    # a NaN bit pattern is not a finite float8 value
    nan = np.array([[0x7F]], np.uint8)
    assert_error(post(api, "/instances/f8/dequantize", npy_bytes(nan)), 400, code="input.code_out_of_range")


# ---------------------------------------------------------------------------- bfloat16
def bf16_case() -> dict[str, Any]:
    return next(c for c in VECTORS["bfloat16"]["cases"] if len(c["shape"]) == 1 and c["shape"][0] >= 8
                and np.isfinite(case_x(c)).all())


def test_bfloat16_answers_are_the_records_bits(api):
    case = bf16_case()
    create(api, "bf", {"quantization_type": "BFLOAT16", **LENIENT})
    x = case_x(case)
    expected = ints(case["ml_dtypes_bits"]).astype(np.uint16)
    npy = post(api, "/instances/bf/quantize", npy_bytes(x))
    out = load_npy(binary(npy))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, expected)
    assert npy["X-Dtype"] == "bfloat16"
    raw = post(api, "/instances/bf/quantize", npy_bytes(x), accept=BIN)
    assert binary(raw) == expected.astype("<u2").tobytes()
    assert raw["X-Shape"] == str(x.size)
    # no parameters: the .npz holds the data alone
    assert set(load_npz(binary(post(api, "/instances/bf/quantize", npy_bytes(x), accept=NPZ)))) == {"data"}
    # quantize_dequantize stays float32
    assert load_npy(binary(post(api, "/instances/bf/quantize_dequantize", npy_bytes(x)))).dtype == np.float32


def test_bfloat16_bodies_both_ways(api):
    case = bf16_case()
    create(api, "bf", {"quantization_type": "BFLOAT16", **LENIENT})
    bits = ints(case["ml_dtypes_bits"]).astype(np.uint16)
    raw = post(api, "/instances/bf/dequantize", bits.astype("<u2").tobytes(), BIN, NPY,
               HTTP_X_SHAPE=str(bits.size), HTTP_X_DTYPE="bfloat16")
    assert same_bits(load_npy(binary(raw)), f32s(case["dq"]))
    npy = post(api, "/instances/bf/dequantize", npy_bytes(bits))  # uint16 .npy: bit patterns
    assert same_bits(load_npy(binary(npy)), f32s(case["dq"]))
    # an X-Dtype: bfloat16 body to quantize is its values: quantizing them again changes nothing
    again = post(api, "/instances/bf/quantize", bits.astype("<u2").tobytes(), BIN, NPY,
                 HTTP_X_SHAPE=str(bits.size), HTTP_X_DTYPE="bfloat16")
    np.testing.assert_array_equal(load_npy(binary(again)), bits)


# ---------------------------------------------------------------------------- qparams conventions
ANCHORS = {"onnx_dynamic": "onnx", "ort_tooling": "ort_tooling", "torch_observer": "torch"}


def qparams_record(anchor: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for case in VECTORS["qparams_conventions"]["cases"]:
        for record in case["records"]:
            scale = f32s(record["scale"])
            if (record["anchor"] == anchor and record["granularity"] == "per_tensor" and len(case["shape"]) == 1
                    and case["shape"][0] > 4 and np.isfinite(scale).all() and scale[0] >= np.finfo(np.float32).tiny
                    and record["dtype"] in ("int8", "uint8")):
                return case, record
    raise AssertionError(anchor)


@pytest.mark.parametrize("anchor", list(ANCHORS))
def test_one_qparams_record_per_anchor_through_npz(api, anchor):
    case, record = qparams_record(anchor)
    create(api, "qp", {"quantization_type": record["dtype"].upper(), "symmetric": record["symmetric"],
                       "qparams_rule": ANCHORS[anchor]})
    response = post(api, "/instances/qp/quantize", npy_bytes(case_x(case)), accept=NPZ)
    members = load_npz(binary(response))
    assert same_bits(members["scale"], f32s(record["scale"]))
    assert int(members["zero_point"]) == record["zero_point"]
    assert same_bits(f32s(response["X-Scale"]), f32s(record["scale"]))
    assert int(response["X-Zero-Point"]) == record["zero_point"]
    if "codes" in record:
        np.testing.assert_array_equal(members["data"].astype(np.int64), ints(record["codes"]))


# ---------------------------------------------------------------------------- refused bodies
@pytest.mark.parametrize(("dtype", "shape", "size"), [("bfloat16", "3", 5), ("bfloat16", "3", 3),
                                                      ("float8_e4m3fn", "4", 3), ("float8_e5m2", "2", 3),
                                                      ("int4", "3", 1), ("int4", "3", 3), ("uint4", "4", 1)])
def test_a_body_of_the_wrong_size_is_refused(api, dtype, shape, size):
    response = post(api, "/instances/default/dequantize", b"\0" * size, BIN, HTTP_X_SHAPE=shape, HTTP_X_DTYPE=dtype)
    assert "size mismatch" in assert_error(response, 400)["detail"]


@pytest.mark.parametrize("dtype", ["float8", "bf16", "int3", "float8_e4m3fnuz", "e5m2"])
def test_an_unknown_x_dtype_is_refused(api, dtype):
    response = post(api, "/instances/default/quantize", b"\0" * 4, BIN, HTTP_X_SHAPE="4", HTTP_X_DTYPE=dtype)
    body = assert_error(response, 400)
    assert "bfloat16" in body["detail"]
    assert "float8_e4m3fn" in body["detail"]


def test_quantize_dequantize_and_dequantize_answers_keep_float32(api):
    create(api, "i4", {"quantization_type": "INT4", "symmetric": True})
    x = np.array([[0.5, -1.0, 0.25]], np.float32)
    fake = post(api, "/instances/i4/quantize_dequantize", npy_bytes(x), accept=BIN)
    assert fake["X-Dtype"] == "float32"
    assert len(binary(fake)) == 12
    q = post(api, "/instances/i4/quantize", npy_bytes(x), accept=BIN)
    assert q["X-Dtype"] == "int4"
    assert binary(q) == onnx_pack(np.rint(x / (np.float32(1.0) / np.float32(7))).astype(np.int8))


def test_upload_numpy_quantize_answers_the_wire_form(api):
    case, record = find("int4", "adv_odd_count_7", dtype="int4", granularity="per_axis")
    import_int4(api, "i4", record)
    response = upload("i4", npy_bytes(case_x(case)), query="channel_dim=0", HTTP_ACCEPT=BIN)
    assert binary(response) == bytes.fromhex(record["packed"]["onnx_numpy_helper_from_array"])
    assert response["X-Dtype"] == "int4"
    assert response["X-Shape"] == "7"
    fake = upload("i4", npy_bytes(case_x(case)), query="channel_dim=0&operation=quantize_dequantize",
                  HTTP_ACCEPT=NPY)
    assert same_bits(load_npy(binary(fake)), f32s(record["dq"]))
    assert fake["X-Dtype"] == "float32"
