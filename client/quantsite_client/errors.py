"""The server's errors as exceptions: one class per kind of failure, each carrying the server's `detail`, `code`
and `field`, and the exit code the `quantsite` command ends with for it (the one table of exit codes)."""

from __future__ import annotations

from typing import Any


class QuantsiteError(Exception):
    """Any failure of a call. `status` is the HTTP status (None when no answer came back)."""

    exit_code = 1

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None, status: int | None = None,
                 request_id: str | None = None, body: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field
        self.status = status
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        code = f" ({self.code})" if self.code else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.detail}{code}{where}"


class ConnectionFailed(QuantsiteError):
    """The server could not be reached, or the connection broke before an answer."""

    exit_code = 3


class ServiceUnavailable(QuantsiteError):
    """503: the server is up but cannot serve now (its database is down); retried for idempotent calls."""

    exit_code = 3


class ServerError(QuantsiteError):
    """Any other 5xx: a bug or a proxy that could not reach the application."""

    exit_code = 3


class AuthenticationFailed(QuantsiteError):
    """401: a token is required and was missing or invalid."""

    exit_code = 4


class PermissionDenied(QuantsiteError):
    """403: the action is not allowed (deleting the default instance)."""

    exit_code = 4


class NotFound(QuantsiteError):
    """404: no such route or resource."""

    exit_code = 5


class InstanceNotFound(NotFound):
    """404 instance.not_found."""


class JobNotFound(NotFound):
    """404 for a model job."""


class Conflict(QuantsiteError):
    """409: the state does not allow the call."""

    exit_code = 6


class InstanceExists(Conflict):
    """409 instance.exists."""


class NotCalibrated(Conflict):
    """409 state.not_calibrated: the instance has no parameters to use yet."""


class InvalidInput(QuantsiteError):
    """400 (and 405, 406, 415, 414): the request was refused as it was written."""

    exit_code = 7


class PayloadTooLarge(InvalidInput):
    """413: a body or an array above the server's limits."""


class UnsupportedMediaType(InvalidInput):
    """415: a Content-Type the route does not take."""


class JobFailed(QuantsiteError):
    """A model job ended failed or cancelled; `job` is its last state."""

    exit_code = 8

    def __init__(self, detail: str, *, job: Any = None, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.job = job


# By status; then, within a status, by the server's code where a narrower class exists.
_BY_STATUS: dict[int, type[QuantsiteError]] = {
    400: InvalidInput, 401: AuthenticationFailed, 403: PermissionDenied, 404: NotFound, 405: InvalidInput,
    406: InvalidInput, 409: Conflict, 413: PayloadTooLarge, 414: InvalidInput, 415: UnsupportedMediaType,
    503: ServiceUnavailable,
}
_BY_CODE: dict[str, type[QuantsiteError]] = {
    "instance.not_found": InstanceNotFound, "instance.exists": InstanceExists,
    "state.not_calibrated": NotCalibrated, "job.not_found": JobNotFound,
}


def error_for(status: int, body: Any, *, request_id: str | None = None,
              not_found: type[NotFound] = NotFound) -> QuantsiteError:
    """The exception for an error answer: its JSON body's detail, code and field when it has them. `not_found`:
    what a 404 of a resource (not of an unknown route) means for the call that got it."""
    detail, code, field = f"HTTP {status}", None, None
    if isinstance(body, dict):
        detail = str(body.get("detail", detail))
        code = body.get("code") if isinstance(body.get("code"), str) else None
        field = body.get("field") if isinstance(body.get("field"), str) else None
    elif isinstance(body, str) and body.strip():
        detail = body.strip().splitlines()[0][:300]
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else InvalidInput if 400 <= status < 500 else QuantsiteError
    if cls is NotFound and code != "route.not_found":
        cls = not_found
    return cls(detail, code=code, field=field, status=status, request_id=request_id, body=body)
