"""The number formats numpy has no dtype for, on the wire: each quantize answer of such a type as the integer
array that carries it, and the name of its type (the ONNX / ml_dtypes name a client decodes it with)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import formats
from .config import QuantizationType

WIRE_DTYPES: dict[QuantizationType, str] = {
    QuantizationType.INT4: "int4",
    QuantizationType.UINT4: "uint4",
    QuantizationType.FP8_E4M3: "float8_e4m3fn",
    QuantizationType.FP8_E5M2: "float8_e5m2",
    QuantizationType.BFLOAT16: "bfloat16",
}
PACKED_DTYPES = frozenset({"int4", "uint4"})


def wire_codes(data: npt.NDArray[Any], qtype: QuantizationType) -> tuple[npt.NDArray[Any], str] | None:
    """A quantize answer of INT4 / UINT4 (int8 / uint8 codes, one a byte), FP8 (uint8 bit patterns) or BFLOAT16
    (uint16 bit patterns), with its type's wire name; None for the types numpy carries itself."""
    name = WIRE_DTYPES.get(qtype)
    if name is None:
        return None
    if qtype is QuantizationType.INT4:
        return np.asarray(data, np.int8), name
    if qtype is QuantizationType.UINT4:
        return np.asarray(data, np.uint8), name
    if qtype is QuantizationType.BFLOAT16:
        return formats.bf16_encode(data), name
    return formats.fp8_encode(data, formats.FP8_DTYPES[name]), name


def pack_int4(codes: npt.NDArray[Any]) -> bytes:
    """INT4 / UINT4 codes packed two per byte as ONNX packs them (element 2i in the low nibble)."""
    return formats.pack_int4(codes)
