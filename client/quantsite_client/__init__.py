"""quantsite-client: a Python client of the quantsite quantization service, numpy arrays in and out, and the
`quantsite` command line (`quantsite_client.cli`)."""

from .arrays import QuantizedArray
from .client import DEFAULT_URL, QuantsiteClient
from .errors import (
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    InstanceExists,
    InstanceNotFound,
    InvalidInput,
    JobFailed,
    JobNotFound,
    NotCalibrated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QuantsiteError,
    ServerError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from .jobs import Job

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_URL", "AuthenticationFailed", "Conflict", "ConnectionFailed", "InstanceExists", "InstanceNotFound",
    "InvalidInput", "Job", "JobFailed", "JobNotFound", "NotCalibrated", "NotFound", "PayloadTooLarge",
    "PermissionDenied", "QuantizedArray", "QuantsiteClient", "QuantsiteError", "ServerError", "ServiceUnavailable",
    "UnsupportedMediaType",
]
