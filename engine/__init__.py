"""quantsite's quantization engine: numpy and numba kernels, usable on its own. This module is its whole public
API; nothing outside `engine/` imports its submodules.

    from engine import Quantizer, QuantizationConfig, QuantizationType, QuantizationMode
"""

from .config import (
    CalibrationMethod,
    LayerOverride,
    QParamsRule,
    QuantizationConfig,
    QuantizationMode,
    QuantizationType,
)
from .errors import (
    ConfigError,
    EngineError,
    InputError,
    LimitError,
    NotCalibratedError,
    NpyFormatError,
    ParameterError,
)
from .jit import warm_kernels
from .metrics import COUNTERS, STATS_FIELDS, Stats, StatsDelta, sqnr_db
from .npy import decode_npy, encode_npy, encode_npz, raw_decode
from .parameters import STATE_KEYS
from .qparams import QParams, qrange, scale_zero_point
from .quantizer import OpResult, Quantizer
from .wire import PACKED_DTYPES, WIRE_DTYPES, pack_int4, wire_codes

__all__ = [
    "COUNTERS",
    "PACKED_DTYPES",
    "STATE_KEYS",
    "STATS_FIELDS",
    "WIRE_DTYPES",
    "CalibrationMethod",
    "ConfigError",
    "EngineError",
    "InputError",
    "LayerOverride",
    "LimitError",
    "NotCalibratedError",
    "NpyFormatError",
    "OpResult",
    "ParameterError",
    "QParams",
    "QParamsRule",
    "QuantizationConfig",
    "QuantizationMode",
    "QuantizationType",
    "Quantizer",
    "Stats",
    "StatsDelta",
    "decode_npy",
    "encode_npy",
    "encode_npz",
    "pack_int4",
    "qrange",
    "raw_decode",
    "scale_zero_point",
    "sqnr_db",
    "warm_kernels",
    "wire_codes",
]
