"""Engine errors: each carries a stable, namespaced code the web layer maps to an HTTP status in one place."""

from __future__ import annotations


class EngineError(Exception):
    """Base class. `code` is stable (clients and tests may rely on it); `field` names the culprit, if any."""

    code = "engine.error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def __str__(self) -> str:
        return self.message


class ConfigError(EngineError):
    """A configuration value is unknown, of the wrong type or out of range."""

    code = "config.invalid"


class InputError(EngineError):
    """The data of a request cannot be processed (shape, dtype, NaN/Inf, codes out of range, axis ...)."""

    code = "input.invalid"


class NotCalibratedError(EngineError):
    """The operation needs parameters (calibrated, imported, or from an earlier quantize) that do not exist yet."""

    code = "state.not_calibrated"


class ParameterError(EngineError):
    """An import of parameters is malformed; nothing was changed."""

    code = "parameters.invalid"


class NpyFormatError(EngineError):
    """Bytes that are not a safe, well-formed `.npy` array."""

    code = "npy.invalid"


class LimitError(EngineError):
    """An input exceeds a configured size limit."""

    code = "input.too_large"


class CheckpointError(InputError):
    """A model checkpoint that cannot be read safely: refused format, malformed or lying header, truncated file,
    unknown dtype, bad `.npz` member (`code` says which: model.<what>)."""

    code = "model.invalid"


class CheckpointTooLarge(CheckpointError, LimitError):
    """A checkpoint (or one of its tensors) larger than the limits, known from its headers before anything is
    read or decompressed."""

    code = "model.too_large"


class JobCancelled(EngineError):
    """A model job stopped between two tensors because it was asked to; nothing was written."""

    code = "job.cancelled"
