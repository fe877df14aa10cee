"""quantsite's quantization engine: pure numpy, usable on its own.

    from engine import Quantizer, QuantizationConfig, QuantizationType, QuantizationMode
"""

from .config import CalibrationMethod, LayerOverride, QuantizationConfig, QuantizationMode, QuantizationType
from .errors import (
    ConfigError,
    EngineError,
    InputError,
    LimitError,
    NotCalibratedError,
    NpyFormatError,
    ParameterError,
)
from .qparams import QParams, qrange, scale_zero_point
from .quantizer import OpResult, Quantizer

__all__ = [
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
    "QuantizationConfig",
    "QuantizationMode",
    "QuantizationType",
    "Quantizer",
    "qrange",
    "scale_zero_point",
]
