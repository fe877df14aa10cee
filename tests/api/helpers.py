"""Shared helpers of the API tests.

Expected numbers never come from the code under test. They come from the spec's example, from the reference
vectors ONNX Runtime and PyTorch produced (tests/data/reference_vectors.json), or from `onnx_*` below: the ONNX
QuantizeLinear / DequantizeLinear formulas and ONNX Runtime's compute_scale_zp written out in numpy float32
arithmetic, independently of `engine` (and checked against the reference vectors in test_api_quantize.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

F32 = np.float32

REFERENCE: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "reference_vectors.json").read_text())
CASES: list[dict[str, Any]] = REFERENCE["cases"]
RECORDS: list[tuple[dict[str, Any], dict[str, Any]]] = [(c, r) for c in CASES for r in c["records"]]


def record_kind(record: dict[str, Any]) -> tuple[Any, ...]:
    """What a record exercises in the API's wiring: type, granularity and axis, scheme, reduce_range."""
    return record["dtype"], record["axis"], record["scheme"], record["reduce_range"]


def representative(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One record of every kind (`record_kind`), chosen deterministically: in file order, each kind takes the
    record whose case has been chosen least so far, so that the sample also spreads over the cases.

    The bit-exactness of every record is proven once, on the engine (tests/engine/test_reference_vectors.py);
    through HTTP a sample proves that each kind reaches the engine and comes back intact."""
    kinds = list(dict.fromkeys(record_kind(r) for _, r in pairs))
    used: dict[str, int] = {}
    chosen = []
    for kind in kinds:
        candidates = [(c, r) for c, r in pairs if record_kind(r) == kind]
        case, record = min(candidates, key=lambda p: used.get(p[0]["name"], 0))  # the first of the least used
        used[case["name"]] = used.get(case["name"], 0) + 1
        chosen.append((case, record))
    return chosen

# The spec's curl example, and its answer on a symmetric INT8 instance (tests/api/test_api_smoke.py):
# amax = 9.0, scale = 9/127, codes = rint(x * 127 / 9).
SPEC_DATA = [[1.2, 3.4, 5.6], [7.8, 9.0, 2.1]]
SPEC_CODES = [[17, 48, 79], [110, 127, 30]]
SPEC_SYMMETRIC = {"quantization_type": "INT8", "num_bits": 8, "symmetric": True}

# The spec's "Default Quantizer Configuration" table.
SPEC_DEFAULTS = {"quantization_type": "INT8", "quantization_mode": "DYNAMIC", "num_bits": 8, "symmetric": False,
                 "enable_cache": True}
# Every attribute of the spec's QuantizerConfigModel, plus calibration_method, qparams_rule and group_size
# (docs/api.md, Configuration).
CONFIG_FIELDS = {
    "quantization_type", "quantization_mode", "num_bits", "symmetric", "enable_cache", "cache_size",
    "enable_mixed_precision", "per_channel", "buffer_size", "use_percentile", "min_percentile", "max_percentile",
    "error_on_nan", "error_on_inf", "optimize_memory", "enable_requantization", "requantization_threshold",
    "outlier_threshold", "skip_layers", "quantize_bias", "quantize_weights_only", "mixed_precision_layers",
    "custom_quantization_config", "calibration_method", "qparams_rule", "group_size",
}
STATS_FIELDS = {"clipped_values", "total_values", "quantize_calls", "dequantize_calls", "cache_hits", "cache_misses",
                "last_scale", "last_zero_point", "processing_time_ms"}
NPY = "application/x-npy"


# ---------------------------------------------------------------------------- responses
def strict_json(response: Any) -> Any:
    """The body as JSON, refusing NaN / Infinity tokens (the API promises strict JSON)."""
    def refuse(token: str) -> Any:
        raise AssertionError(f"non-strict JSON token {token} in the response")

    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return json.loads(response.content, parse_constant=refuse)


_ANY = object()


def assert_error(response: Any, status: int, *, code: str | None = None, detail: str | None = None,
                 field: Any = _ANY) -> dict[str, Any]:
    """A JSON error: {"detail": str, "code": str} plus "field" where one field is at fault."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = strict_json(response)
    assert isinstance(body, dict), body
    assert set(body) <= {"detail", "code", "field"}, body
    assert isinstance(body.get("detail"), str), body
    assert body["detail"], body
    assert isinstance(body.get("code"), str), body
    assert body["code"], body
    if code is not None:
        assert body["code"] == code, body
    if detail is not None:
        assert body["detail"] == detail, body
    if field is not _ANY:
        assert body.get("field") == field, body
    return body


def ok(response: Any) -> Any:
    assert response.status_code == 200, (response.status_code, response.content[:500])
    return strict_json(response)


# ---------------------------------------------------------------------------- instance state
def create(api: Any, instance_id: str, config: dict[str, Any] | None = None) -> None:
    body = ok(api.post(f"/instances/{instance_id}", config or {}))
    assert body == {"message": f"Quantizer instance {instance_id} created successfully"}


def snapshot(api: Any, instance_id: str) -> dict[str, Any]:
    """Everything stored about an instance, as the API shows it."""
    return {
        "instances": ok(api.get("/instances")),
        "config": ok(api.get(f"/instances/{instance_id}/config")),
        "parameters": ok(api.get(f"/instances/{instance_id}/parameters")),
        "stats": ok(api.get(f"/instances/{instance_id}/stats")),
    }


def import_record(api: Any, instance_id: str, record: dict[str, Any], mode: str = "STATIC") -> None:
    """A STATIC instance of the record's type holding the record's scale and zero point."""
    create(api, instance_id, {"quantization_type": record["dtype"].upper(), "quantization_mode": mode})
    if record["axis"] is None:
        params = {"global_scale": record["scale"], "global_zero_point": record["zero_point"]}
    else:
        params = {"per_channel_scales": record["scale"], "per_channel_zero_points": record["zero_point"],
                  "channel_dim": record["axis"]}
    assert ok(api.post(f"/instances/{instance_id}/parameters", {"parameters": params})) == {
        "message": "Parameters imported successfully"}


# ---------------------------------------------------------------------------- numbers
def bits(values: Any) -> npt.NDArray[np.int32]:
    """float32 bit patterns, so that equality is to the bit (-0.0 != 0.0)."""
    return np.asarray(values, dtype=F32).view(np.int32)


def assert_bits_equal(actual: Any, expected: Any) -> None:
    a, e = np.asarray(actual, dtype=F32), np.asarray(expected, dtype=F32)
    assert a.shape == e.shape, (a.shape, e.shape)
    mismatch = np.flatnonzero(a.view(np.int32) != e.view(np.int32))
    assert mismatch.size == 0, f"{mismatch.size} differ, first {a.ravel()[mismatch[:5]]} != {e.ravel()[mismatch[:5]]}"


def qrange(dtype: str, num_bits: int | None = None) -> tuple[int, int]:
    """ONNX integer ranges: signed -2^(b-1) .. 2^(b-1)-1, unsigned 0 .. 2^b-1."""
    b = num_bits or {"int8": 8, "uint8": 8, "int16": 16}[dtype.lower()]
    if dtype.lower() == "uint8":
        return 0, 2**b - 1
    return -(2 ** (b - 1)), 2 ** (b - 1) - 1


def onnx_qparams(rmin: Any, rmax: Any, qmin: int, qmax: int, symmetric: bool) -> tuple[Any, Any]:
    """ONNX Runtime's compute_scale_zp (qparams_rule ort_tooling, docs/numerics.md):
    range widened to include 0; symmetric signed: scale = amax/qmax over [-qmax, qmax], zp 0; symmetric unsigned:
    zp = (qmin+qmax+1)/2; asymmetric: scale64 = (rmax-rmin)/(qmax-qmin) in float64, stored rounded once to
    float32, zp = rint(qmin - rmin/scale64) in float64; scale64 below float32 tiny gives scale 1, zp 0."""
    lo = np.minimum(np.asarray(rmin, F32), F32(0))
    hi = np.maximum(np.asarray(rmax, F32), F32(0))
    if symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = -amax, amax
        if qmin < 0:
            qmin = -qmax
    scale64 = (hi.astype(np.float64) - lo.astype(np.float64)) / (qmax - qmin)
    degenerate = scale64 < np.finfo(F32).tiny
    scale64 = np.where(degenerate, 1.0, scale64)
    scale = scale64.astype(F32)
    if symmetric:
        zp = np.full(scale.shape, 0 if qmin < 0 else (qmin + qmax + 1) // 2, dtype=np.int64)
    else:
        zp = np.clip(np.rint(qmin - lo.astype(np.float64) / scale64), qmin, qmax).astype(np.int64)
    zp = np.where(degenerate, 0, zp)
    return scale, zp


def onnx_quantize(x: Any, scale: Any, zp: Any, qmin: int, qmax: int) -> npt.NDArray[np.int64]:
    """QuantizeLinear: clip(rint(x / scale) + zp, qmin, qmax), float32 division, round half to even."""
    x = np.asarray(x, F32)
    return np.clip(np.rint(x / np.asarray(scale, F32)).astype(np.int64) + np.asarray(zp, np.int64), qmin, qmax)


def onnx_dequantize(q: Any, scale: Any, zp: Any) -> npt.NDArray[np.float32]:
    """DequantizeLinear: float32((q - zp) * scale)."""
    return ((np.asarray(q, np.int64) - np.asarray(zp, np.int64)).astype(F32) * np.asarray(scale, F32)).astype(F32)


# ---------------------------------------------------------------------------- .npy uploads
def npy_bytes(arr: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    """A hand-written version 1.0 .npy preamble and header (to forge files numpy would not write)."""
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    total = 10 + len(text) + 1
    text += " " * ((64 - total % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def upload(instance_id: str, content: bytes, name: str = "a.npy", query: str = "", **extra: Any) -> Any:
    """POST /instances/{id}/upload_numpy as a browser or `curl -F file=@a.npy` does."""
    path = f"/instances/{instance_id}/upload_numpy" + (f"?{query}" if query else "")
    return Client().post(path, {"file": SimpleUploadedFile(name, content)}, **extra)


def load_npy(content: bytes) -> npt.NDArray[Any]:
    return np.load(io.BytesIO(content), allow_pickle=False)
