"""Response renderers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from rest_framework.renderers import BaseRenderer

from engine import QParams, encode_npy, encode_npz


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
    parameters used come with the answer (`ArrayAnswer.params`), for the formats that carry them."""

    charset = None

    def encode(self, array: np.ndarray, params: QParams | None) -> bytes:
        raise NotImplementedError

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        response = (renderer_context or {}).get("response")
        array = data.get("data") if isinstance(data, dict) else None
        if response is None or response.status_code >= 400 or not isinstance(array, np.ndarray):
            if response is not None:
                response["Content-Type"] = "application/json"
            return OrjsonRenderer().render(data)
        response["X-Shape"] = ",".join(str(n) for n in array.shape)
        response["X-Dtype"] = array.dtype.name
        return self.encode(array, getattr(response, "params", None))


class NpyRenderer(ArrayRenderer):
    media_type = "application/x-npy"
    format = "npy"

    def encode(self, array: np.ndarray, params: QParams | None) -> bytes:
        return encode_npy(array)


class OctetStreamRenderer(ArrayRenderer):
    """Raw little-endian C-order bytes, shape and dtype in the X-Shape and X-Dtype headers."""

    media_type = "application/octet-stream"
    format = "bin"

    def encode(self, array: np.ndarray, params: QParams | None) -> bytes:
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


class NpzRenderer(ArrayRenderer):
    """The result with its parameters in one file: members `data`, `scale` (one per channel, or a 0-d array),
    `zero_point` and `axis` (per channel only); plain numeric arrays, loadable with allow_pickle=False. A float
    type's answer (FLOAT16, NONE) has no parameters: `data` alone."""

    media_type = "application/x-npz"
    format = "npz"

    def encode(self, array: np.ndarray, params: QParams | None) -> bytes:
        members: dict[str, np.ndarray] = {"data": array}
        if params is not None:
            members["scale"] = params.scale
            members["zero_point"] = params.zero_point
            if params.axis is not None:
                members["axis"] = np.asarray(params.axis, dtype=np.int64)
        return encode_npz(members)
