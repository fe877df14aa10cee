"""quantsite's quantization engine: numpy and numba kernels, usable on its own. This module is its whole public
API; nothing outside `engine/` imports its submodules.

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
from .evaluation import Candidate, Evaluation, evaluate, needs_calibration, standard_grid
from .jit import fill_kernel_cache, warm_kernels
from .jobs import REPORT_FIELDS, LayerReport, job_kernels, quantize_checkpoint, summarize, warm_job_kernels
from .metrics import (
    COUNTERS,
    QUALITY_COUNTERS,
    QUALITY_FIELDS,
    QUALITY_LATEST,
    QUALITY_LOWEST,
    STATS_FIELDS,
    QualityStats,
    Stats,
    StatsDelta,
    quality_delta,
    quality_summary,
    sqnr_db,
)
from .npy import decode_npy, encode_npy, encode_npz, raw_decode
from .parameters import STATE_KEYS
from .qparams import QParams, qrange, scale_zero_point
from .quality import QualityReport, grid_extent, quality_report, sqnr_from_sums
from .quantizer import OpResult, Quantizer
from .wire import PACKED_DTYPES, WIRE_DTYPES, pack_int4, wire_codes

__all__ = [
    "COUNTERS",
    "PACKED_DTYPES",
    "QUALITY_COUNTERS",
    "QUALITY_FIELDS",
    "QUALITY_LATEST",
    "QUALITY_LOWEST",
    "REPORT_FIELDS",
    "STATE_KEYS",
    "STATS_FIELDS",
    "WIRE_DTYPES",
    "CalibrationMethod",
    "Candidate",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointTooLarge",
    "ConfigError",
    "EngineError",
    "Evaluation",
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
    "QualityReport",
    "QualityStats",
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
    "evaluate",
    "fill_kernel_cache",
    "grid_extent",
    "inspect_checkpoint",
    "job_kernels",
    "needs_calibration",
    "pack_int4",
    "qrange",
    "quality_delta",
    "quality_report",
    "quality_summary",
    "quantize_checkpoint",
    "raw_decode",
    "scale_zero_point",
    "sqnr_db",
    "sqnr_from_sums",
    "standard_grid",
    "summarize",
    "warm_job_kernels",
    "warm_kernels",
    "wire_codes",
]
