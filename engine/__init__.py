"""quantsite's quantization engine: pure numpy, usable on its own. This module is its whole public API; nothing
outside `engine/` imports its submodules.

    from engine import Quantizer, QuantizationConfig, QuantizationType, QuantizationMode
"""

from .checkpoint import CheckpointInfo, TensorInfo, checkpoint_format, inspect_checkpoint
from .config import (
    CalibrationMethod,
    LayerOverride,
    QParamsRule,
    QuantizationConfig,
    QuantizationMode,
    QuantizationType,
)
from .errors import (
    CheckpointError,
    CheckpointTooLarge,
    ConfigError,
    EngineError,
    InputError,
    JobCancelled,
    LimitError,
    NotCalibratedError,
    NpyFormatError,
    ParameterError,
)
from .jobs import REPORT_FIELDS, LayerReport, quantize_checkpoint, summarize
from .metrics import COUNTERS, STATS_FIELDS, Stats, StatsDelta, sqnr_db
from .npy import decode_npy, encode_npy, encode_npz, raw_decode
from .parameters import STATE_KEYS
from .qparams import QParams, qrange, scale_zero_point
from .quantizer import OpResult, Quantizer
from .wire import PACKED_DTYPES, WIRE_DTYPES, pack_int4, wire_codes

__all__ = [
    "COUNTERS",
    "PACKED_DTYPES",
    "REPORT_FIELDS",
    "STATE_KEYS",
    "STATS_FIELDS",
    "WIRE_DTYPES",
    "CalibrationMethod",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointTooLarge",
    "ConfigError",
    "EngineError",
    "InputError",
    "JobCancelled",
    "LayerOverride",
    "LayerReport",
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
    "TensorInfo",
    "checkpoint_format",
    "decode_npy",
    "encode_npy",
    "encode_npz",
    "inspect_checkpoint",
    "pack_int4",
    "qrange",
    "quantize_checkpoint",
    "raw_decode",
    "scale_zero_point",
    "sqnr_db",
    "summarize",
    "wire_codes",
]
