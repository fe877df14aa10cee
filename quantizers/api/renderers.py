"""Response renderers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from rest_framework.renderers import BaseRenderer

from engine import PACKED_DTYPES, QParams, encode_npy, encode_npz, pack_int4


class OrjsonRenderer(BaseRenderer):
    """JSON straight from numpy arrays (no .tolist()); float32 values written shortest-round-trip (0.1 stays 0.1).
    orjson never writes NaN or Infinity (it writes null), so responses are strict JSON."""

    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class ArrayRenderer(BaseRenderer):
    """Renders the `data` array of an operation's answer as binary; anything else (an error) stays JSON. The
    parameters used come with the answer (`ArrayAnswer.params`), for the formats that carry them. A quantize
    answer of a type numpy has no dtype for is rendered from its wire form (`ArrayAnswer.wire`): int8 / uint8
    codes for INT4 / UINT4 (packed two per byte in raw bytes), uint8 bit patterns for FP8, uint16 for BFLOAT16,
    X-Dtype naming the logical type and X-Shape the logical (unpacked) shape."""

    charset = None

    def encode(self, array: np.ndarray, params: QParams | None, dtype: str, float8: bool) -> bytes:
        raise NotImplementedError

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        response = (renderer_context or {}).get("response")
        array = data.get("data") if isinstance(data, dict) else None
        if response is None or response.status_code >= 400 or not isinstance(array, np.ndarray):
            if response is not None:
                response["Content-Type"] = "application/json"
            return OrjsonRenderer().render(data)
        wire = getattr(response, "wire", None)
        array, dtype = wire if wire is not None else (array, array.dtype.name)
        qtype = getattr(response, "quantization_type", None)
        response["X-Shape"] = ",".join(str(n) for n in array.shape)
        response["X-Dtype"] = dtype
        return self.encode(array, getattr(response, "params", None), dtype,
                           bool(qtype is not None and qtype.is_float8))


class NpyRenderer(ArrayRenderer):
    media_type = "application/x-npy"
    format = "npy"

    def encode(self, array: np.ndarray, params: QParams | None, dtype: str, float8: bool) -> bytes:
        return encode_npy(array)


class OctetStreamRenderer(ArrayRenderer):
    """Raw little-endian C-order bytes, shape and dtype in the X-Shape and X-Dtype headers; int4 / uint4 codes
    packed two per byte as ONNX packs them (element 2i in the low nibble, an odd count padded)."""

    media_type = "application/octet-stream"
    format = "bin"

    def encode(self, array: np.ndarray, params: QParams | None, dtype: str, float8: bool) -> bytes:
        if dtype in PACKED_DTYPES:
            return pack_int4(array)
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


class NpzRenderer(ArrayRenderer):
    """The result with its parameters in one file: members `data` (as the .npy answer holds it), `scale` (one per
    channel, one per block shaped like ONNX's scale initializer, or a 0-d array), `zero_point` (not for FP8, which
    has none), `axis` (per channel or per block) and `block_size` (per block); plain numeric arrays, loadable with
    allow_pickle=False. A float type's answer (FLOAT16, BFLOAT16, NONE) has no parameters: `data` alone."""

    media_type = "application/x-npz"
    format = "npz"

    def encode(self, array: np.ndarray, params: QParams | None, dtype: str, float8: bool) -> bytes:
        members: dict[str, np.ndarray] = {"data": array}
        if params is not None:
            members["scale"] = params.scale
            if not float8:
                members["zero_point"] = params.zero_point
            if params.axis is not None:
                members["axis"] = np.asarray(params.axis, dtype=np.int64)
            if params.block_size is not None:
                members["block_size"] = np.asarray(params.block_size, dtype=np.int64)
        return encode_npz(members)


# ---------------------------------------------------------------------------- model jobs
class JsonErrorRenderer(BaseRenderer):
    """A non-JSON format whose errors stay JSON."""

    charset = None

    def encode(self, data: Any) -> bytes:
        raise NotImplementedError

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        response = (renderer_context or {}).get("response")
        if response is None or response.status_code >= 400:
            if response is not None:
                response["Content-Type"] = "application/json"
            return OrjsonRenderer().render(data)
        return self.encode(data)


class CsvRenderer(JsonErrorRenderer):
    """A job's report as CSV: one row per layer, one column per report key."""

    media_type = "text/csv"
    format = "csv"

    def encode(self, data: Any) -> bytes:
        from ..jobs import report_csv

        return report_csv(data).encode()


class CheckpointRenderer(JsonErrorRenderer):
    """The artifact route answers with a streamed file (a FileResponse, never rendered); this renderer lets a
    client ask for application/octet-stream and still get JSON errors."""

    media_type = "application/octet-stream"
    format = "bin"

    def encode(self, data: Any) -> bytes:
        return OrjsonRenderer().render(data)
