"""POST /instances/{id}/upload_numpy: multipart .npy uploads, forged files, options, answers as JSON or .npy."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.api.helpers import (
    F32,
    NPY,
    SPEC_CODES,
    SPEC_DATA,
    SPEC_SYMMETRIC,
    assert_bits_equal,
    assert_error,
    create,
    load_npy,
    npy_bytes,
    npy_header,
    ok,
    onnx_dequantize,
    snapshot,
    upload,
)

SPEC_NPY = npy_bytes(np.asarray(SPEC_DATA, F32))
SPEC_SCALE = F32(np.float64(F32(9.0)) / 127)  # symmetric INT8: amax / qmax


@pytest.fixture
def sym(api):
    create(api, "sym", SPEC_SYMMETRIC)
    return "sym"


# ---------------------------------------------------------------------------- answers
@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("query", ["", "operation=quantize"])
def test_upload_quantize_answers_every_field(api, sym, slash, query):
    path = f"/instances/sym/upload_numpy{slash}" + (f"?{query}" if query else "")
    response = Client().post(path, {"file": SimpleUploadedFile("weights.npy", SPEC_NPY)})
    body = ok(response)
    assert body == {"message": "File processed successfully", "operation": "quantize", "shape": [2, 3],
                    "dtype": "int8", "original_shape": [2, 3], "quantization_type": "INT8", "data": SPEC_CODES}
    stats = ok(api.get("/instances/sym/stats"))
    assert (stats["quantize_calls"], stats["total_values"]) == (1, 6)


def test_upload_dequantize(api, sym):
    ok(upload("sym", SPEC_NPY))  # the latest quantize's parameters: scale 9/127, zp 0
    codes = npy_bytes(np.asarray(SPEC_CODES, np.int8))
    body = ok(upload("sym", codes, query="operation=dequantize"))
    assert (body["operation"], body["shape"], body["dtype"], body["original_shape"], body["quantization_type"]) == (
        "dequantize", [2, 3], "float32", [2, 3], "INT8")
    assert_bits_equal(body["data"], onnx_dequantize(SPEC_CODES, SPEC_SCALE, 0))


def test_upload_quantize_dequantize(api, sym):
    body = ok(upload("sym", SPEC_NPY, query="operation=quantize_dequantize"))
    assert (body["operation"], body["dtype"], body["quantization_type"]) == ("quantize_dequantize", "float32", "INT8")
    assert_bits_equal(body["data"], onnx_dequantize(SPEC_CODES, SPEC_SCALE, 0))


@pytest.mark.parametrize("operation", ["quantize", "dequantize", "quantize_dequantize"])
def test_upload_answers_npy_when_asked(api, sym, operation):
    ok(upload("sym", SPEC_NPY))
    content = npy_bytes(np.asarray(SPEC_CODES, np.int8)) if operation == "dequantize" else SPEC_NPY
    response = upload("sym", content, query=f"operation={operation}", HTTP_ACCEPT=NPY)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == NPY
    array = load_npy(response.content)
    if operation == "quantize":
        assert array.dtype == np.int8
        assert array.tolist() == SPEC_CODES
    else:
        assert array.dtype == np.float32
        assert_bits_equal(array, onnx_dequantize(SPEC_CODES, SPEC_SCALE, 0))


@pytest.mark.parametrize("name", ["a.npy", "A.NPY", "weights.Npy", "x.nPy", "dir.v1.npy"])
def test_the_name_must_end_in_npy_in_any_case(api, sym, name):
    assert ok(upload("sym", SPEC_NPY, name=name))["data"] == SPEC_CODES


@pytest.mark.parametrize("name", ["a.npz", "a.txt", "a.npy.txt", "npy", "a.np", "a", "a.npy ", "a.pkl"])
def test_other_names_are_400(api, sym, name):
    before = snapshot(api, "sym")
    assert_error(upload("sym", SPEC_NPY, name=name), 400, field="file")
    assert snapshot(api, "sym") == before


@pytest.mark.parametrize(("array", "expected"), [
    (np.asarray(SPEC_DATA, np.float64), SPEC_CODES),
    (np.asarray(SPEC_DATA, ">f4"), SPEC_CODES),  # big-endian
    (np.asfortranarray(np.asarray(SPEC_DATA, F32)), SPEC_CODES),  # fortran_order True
    (np.asarray(SPEC_DATA, np.float16), None),
    (np.asarray([[9, -9, 0]], np.int16), [[127, -127, 0]]),  # integers are data too: amax 9
    (np.asarray([[9, 3, 0]], np.uint8), [[127, 42, 0]]),  # 3 * 127/9 = 42.33 -> 42
])
def test_numeric_dtypes_and_orders_are_accepted(api, sym, array, expected):
    body = ok(upload("sym", npy_bytes(array)))
    assert body["original_shape"] == list(array.shape)
    if expected is not None:
        assert body["data"] == expected


@pytest.mark.parametrize("shape", [(6,), (1, 2, 3), (1, 1, 2, 3)])
def test_one_to_four_dimensions_are_accepted(api, sym, shape):
    body = ok(upload("sym", npy_bytes(np.asarray(SPEC_DATA, F32).reshape(shape))))
    assert body["shape"] == body["original_shape"] == list(shape)
    assert np.asarray(body["data"]).reshape(2, 3).tolist() == SPEC_CODES


def test_an_upload_counts_in_the_stored_stats(api, sym):
    ok(upload("sym", SPEC_NPY))
    ok(upload("sym", SPEC_NPY, query="operation=quantize_dequantize"))
    stats = ok(api.get("/instances/sym/stats"))
    assert (stats["quantize_calls"], stats["dequantize_calls"], stats["total_values"]) == (2, 1, 12)


# ---------------------------------------------------------------------------- options in the query string
def test_validate_false_in_the_query(api):
    create(api, "st", {"quantization_mode": "STATIC"})
    ok(api.post("/instances/st/parameters", {"parameters": {"global_scale": 0.1, "global_zero_point": 0}}))
    data = npy_bytes(np.asarray([[100.0, 1.0]], F32))  # 100 / 0.1 saturates
    assert ok(upload("st", data, query="validate=false"))["data"] == [[127, 10]]
    assert ok(api.get("/instances/st/stats"))["clipped_values"] == 0
    assert ok(upload("st", data, query="validate=true"))["data"] == [[127, 10]]
    assert ok(api.get("/instances/st/stats"))["clipped_values"] == 1


def test_channel_dim_and_layer_name_in_the_query(api):
    create(api, "pc", {**SPEC_SYMMETRIC, "per_channel": True, "skip_layers": ["head"]})
    data = np.asarray([[1.0, -2.0], [4.0, 0.5]], F32)
    # columns: amax 4 and 2 -> codes rint(x * 127 / amax): [[32, -127], [127, 32]]
    assert ok(upload("pc", npy_bytes(data), query="channel_dim=1"))["data"] == [[32, -127], [127, 32]]
    body = ok(upload("pc", npy_bytes(data), query="layer_name=head"))
    assert body["quantization_type"] == "NONE"
    assert_bits_equal(body["data"], data)


@pytest.mark.parametrize(("query", "field"), [
    ("operation=compress", "operation"),
    ("operation=QUANTIZE", "operation"),
    ("operation=", "operation"),
    ("validate=maybe", "validate"),
    ("validate=", "validate"),
    ("channel_dim=x", "channel_dim"),
    ("channel_dim=1.5", "channel_dim"),
    ("channel_dim=5", "channel_dim"),
])
def test_bad_query_options_are_400(api, sym, query, field):
    ok(upload("sym", SPEC_NPY))
    before = snapshot(api, "sym")
    assert_error(upload("sym", SPEC_NPY, query=query), 400, field=field)
    assert snapshot(api, "sym") == before


# ---------------------------------------------------------------------------- refused uploads
def test_the_file_field_is_required(api, sym):
    assert_error(Client().post("/instances/sym/upload_numpy", {}), 400, field="file")
    assert_error(Client().post("/instances/sym/upload_numpy", {"upload": SimpleUploadedFile("a.npy", SPEC_NPY)}),
                 400, field="file")
    assert_error(Client().post("/instances/sym/upload_numpy", {"file": "not a file"}), 400, field="file")


def test_a_json_body_is_415(api, sym):
    assert_error(api.post("/instances/sym/upload_numpy", {"data": SPEC_DATA}), 415,
                 code="http.unsupported_media_type")


def test_upload_to_an_unknown_instance_is_404(api):
    assert_error(upload("ghost", SPEC_NPY), 404, code="instance.not_found", detail="Quantizer instance ghost not found")


def test_upload_with_an_invalid_id_is_400(api):
    assert_error(upload("a" * 65, SPEC_NPY), 400, code="instance_id.invalid", field="instance_id")


def test_upload_to_a_static_instance_without_parameters_is_409(api):
    create(api, "st", {"quantization_mode": "STATIC"})
    before = snapshot(api, "st")
    assert_error(upload("st", SPEC_NPY), 409, code="state.not_calibrated")
    assert snapshot(api, "st") == before


def test_dequantize_upload_before_any_quantize_is_409(api):
    assert_error(upload("default", npy_bytes(np.asarray([[1, 2]], np.int8)), query="operation=dequantize"), 409,
                 code="state.not_calibrated")


def test_dequantize_upload_of_codes_out_of_range_is_400(api, sym):
    ok(upload("sym", SPEC_NPY))
    before = snapshot(api, "sym")
    codes = npy_bytes(np.asarray([[1, 300]], np.int16))
    assert_error(upload("sym", codes, query="operation=dequantize"), 400, code="input.code_out_of_range")
    assert snapshot(api, "sym") == before


def test_nan_in_an_upload_is_400_when_error_on_nan(api, sym):
    before = snapshot(api, "sym")
    assert_error(upload("sym", npy_bytes(np.asarray([[1.0, np.nan]], F32))), 400, code="input.nan", field="data")
    assert_error(upload("sym", npy_bytes(np.asarray([[1.0, np.inf]], F32))), 400, code="input.inf", field="data")
    assert snapshot(api, "sym") == before


def test_allowed_non_finite_values_never_reach_the_json(api):
    create(api, "lax", {**SPEC_SYMMETRIC, "error_on_nan": False, "error_on_inf": False})
    data = npy_bytes(np.asarray([[np.nan, np.inf, -np.inf, 9.0]], F32))
    body = ok(upload("lax", data))  # strict JSON: ok() refuses NaN / Infinity tokens
    assert body["data"] == [[0, 127, -128, 127]]  # NaN -> the zero point; +-inf saturate
    fake = ok(upload("lax", data, query="operation=quantize_dequantize"))["data"]
    assert fake[0][0] == 0.0
    assert all(isinstance(v, float) for v in fake[0])


# ---------------------------------------------------------------------------- forged files
_detonated: list[str] = []


def _detonate(*args):
    _detonated.append("unpickled")
    return "boom"


class _Bomb:
    def __reduce__(self):
        return (_detonate, ("payload",))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any call of pickle (or numpy.load, which unpickles object arrays) fails the test."""
    _detonated.clear()
    calls = []

    def forbidden(name):
        def trap(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called")
        return trap

    monkeypatch.setattr(pickle, "loads", forbidden("pickle.loads"))
    monkeypatch.setattr(pickle, "load", forbidden("pickle.load"))
    monkeypatch.setattr(np, "load", forbidden("numpy.load"))
    yield calls
    assert calls == []
    assert _detonated == []


def _pickle_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([[_Bomb(), _Bomb()]], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _structured_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 2), dtype=[("a", "<f4"), ("b", "<i4")]))
    return buf.getvalue()


FORGED = {
    "object dtype (pickle)": _pickle_npy(),
    "object descr, junk payload": npy_header("|O", (2, 2)) + b"\x80\x04junk" * 8,
    "structured dtype": _structured_npy(),
    "bool": npy_bytes(np.asarray([[True, False]])),
    "complex": npy_bytes(np.asarray([[1 + 2j]], np.complex64)),
    "unicode": npy_bytes(np.asarray([["ab", "cd"]])),
    "bytes": npy_bytes(np.asarray([[b"ab"]])),
    "datetime": npy_bytes(np.asarray([["2020-01-01"]], "datetime64[D]")),
    "shape within the limit, 16 bytes of data": npy_header("<f4", (1000, 1000)) + b"\x00" * 16,
    "truncated payload": SPEC_NPY[:-5],
    "payload longer than declared": SPEC_NPY + b"\x00\x00\x00\x00",
    "truncated header": SPEC_NPY[:40],
    "only the magic": b"\x93NUMPY",
    "empty file": b"",
    "bad magic": b"\x93NUMPX" + SPEC_NPY[6:],
    "not npy at all": b"PK\x03\x04 a zip archive, say an .npz",
    "version 9.9": SPEC_NPY[:6] + b"\x09\x09" + SPEC_NPY[8:],
    "header length beyond the file": SPEC_NPY[:8] + b"\xff\x7f" + SPEC_NPY[10:],
    "header not a literal": b"\x93NUMPY\x01\x00" + (64 - 10).to_bytes(2, "little")
                            + b"__import__('os')".ljust(53) + b"\n",
    "header a function call": b"\x93NUMPY\x01\x00" + (64 - 10).to_bytes(2, "little")
                              + b"dict(descr='<f4', fortran_order=False, shape=(1,))".ljust(53) + b"\n",
    "negative dimension": npy_header("<f4", (-1, 2)) + b"\x00" * 8,
    "zero dimension": npy_header("<f4", (0, 2)),
    "five dimensions": npy_header("<f4", (1, 1, 1, 1, 1)) + b"\x00" * 4,
    "zero dimensions (a scalar)": npy_bytes(np.float32(1.0)),
    "float dimension": npy_header("<f4", (2.0, 1)) + b"\x00" * 8,  # type: ignore[arg-type]
    "two-byte type without byte order": npy_header("|f2", (1, 1)) + b"\x00" * 2,
}


@pytest.mark.parametrize("content", FORGED.values(), ids=FORGED.keys())
def test_a_forged_or_broken_npy_is_400_and_never_unpickled(api, sym, no_unpickling, content):
    before = snapshot(api, "sym")
    body = assert_error(upload("sym", content), 400)
    assert body["code"].startswith(("npy.", "input.")), body
    assert snapshot(api, "sym") == before
    # the instance still works
    assert ok(upload("sym", SPEC_NPY))["data"] == SPEC_CODES


def test_a_declared_shape_beyond_the_element_limit_is_refused_before_allocating(api, sym, no_unpickling, settings):
    """(100000, 100000) float32 would be 40 GB: the element limit refuses it from the header alone (413, as
    every QUANTIZER_MAX_ELEMENTS refusal)."""
    before = snapshot(api, "sym")
    content = npy_header("<f4", (100_000, 100_000)) + b"\x00" * 16
    assert_error(upload("sym", content), 413, code="input.too_large")
    settings.QUANTIZER_MAX_ELEMENTS = 5
    assert_error(upload("sym", SPEC_NPY), 413, code="input.too_large")  # 6 elements
    assert snapshot(api, "sym") == before


def test_an_upload_over_the_body_limit_is_413(api, sym, settings):
    settings.QUANTIZER_MAX_BODY_MB = 1
    big = npy_bytes(np.zeros((600, 600), F32))  # 1.44 MB
    assert_error(upload("sym", big), 413, code="request.too_large",
                 detail="The request body exceeds QUANTIZER_MAX_BODY_MB (1 MB)")
    assert ok(api.get("/instances/sym/stats"))["quantize_calls"] == 0


def test_the_pickle_trap_itself_works():
    """The bomb does go off when something unpickles it, so its silence above means something."""
    _detonated.clear()
    assert np.load(io.BytesIO(_pickle_npy()), allow_pickle=True)[0, 0] == "boom"
    assert _detonated == ["unpickled", "unpickled"]
    _detonated.clear()
