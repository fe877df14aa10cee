"""QuantsiteClient: every route of the quantsite API as a method, numpy arrays in and out.

Arrays go over the binary paths by default (`.npy` bodies, `.npz` / `.npy` answers); `wire="json"` (for the client
or one call) sends JSON bodies instead, for 2-D arrays. One httpx.Client per QuantsiteClient keeps connections
alive between calls. Errors raise the exceptions of `quantsite_client.errors`. Idempotent calls (reads, PUT,
PATCH, DELETE, and the POSTs that change nothing: compute_params, evaluate) are retried with exponential backoff on
a 503 or a connection error; no other call is ever sent twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, overload

import httpx
import numpy as np
import numpy.typing as npt

from . import arrays
from .arrays import QuantizedArray
from .errors import ConnectionFailed, InstanceNotFound, JobNotFound, NotFound, QuantsiteError, error_for
from .jobs import Job
from .progress import Bar, ReadProgress

Wire = Literal["binary", "json"]
DEFAULT_URL = "http://127.0.0.1:8000"
# Explicit dequantize parameters ride in the query string of a binary body; a proxy refuses a request line above
# 8 KB, so longer lists (hundreds of channels) go in a JSON body, which 2-D codes can take.
MAX_QUERY_CHARS = 6000
# Failures after which the request was not processed, or may be sent again without harm for idempotent calls.
RETRYABLE_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError,
                    httpx.RemoteProtocolError, httpx.PoolTimeout)


class QuantsiteClient:
    """A client of one quantsite server.

    >>> with QuantsiteClient("http://127.0.0.1:8000", token="...") as qs:
    ...     q = qs.quantize("default", weights)
    """

    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 60.0, *,
                 retries: int = 3, backoff: float = 0.5, max_backoff: float = 10.0, wire: Wire = "binary",
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": "quantsite-client/0.1"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff, self.max_backoff, self.wire = retries, backoff, max_backoff, wire
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QuantsiteClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def request(self, method: str, path: str, *, idempotent: bool, not_found: type[NotFound] = InstanceNotFound,
                stream: bool = False, **kwargs: Any) -> httpx.Response:
        """Send one request; raise the matching QuantsiteError for an error answer. Retried only when
        `idempotent`, on 503 and connection errors, waiting backoff * 2^n (or the answer's Retry-After), each
        wait at most max_backoff seconds. A `stream` answer is left unread (close it)."""
        attempts = 1 + (self.retries if idempotent else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.send(self._http.build_request(method, path, **kwargs), stream=stream)
            except RETRYABLE_ERRORS as exc:
                if last:
                    raise ConnectionFailed(f"{method} {self.base_url}{path}: {exc or type(exc).__name__}") from exc
                self._sleep(attempt, None)
                continue
            except httpx.TimeoutException as exc:
                raise ConnectionFailed(f"{method} {self.base_url}{path}: timed out ({type(exc).__name__})") from exc
            if response.status_code < 400:
                return response
            if stream:
                response.read()
            if response.status_code == 503 and not last:
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            raise error_for(response.status_code, _body(response), request_id=response.headers.get("X-Request-ID"),
                            not_found=not_found)
        raise AssertionError("unreachable")  # pragma: no cover

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        wait = self.backoff * 2**attempt
        if retry_after and retry_after.isdigit():
            wait = max(wait, float(retry_after))
        time.sleep(min(wait, self.max_backoff))

    def _json(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> Any:
        return self.request(method, path, idempotent=idempotent, **kwargs).json()

    # ------------------------------------------------------------------ health and instances
    def health(self) -> dict[str, Any]:
        """GET /: the service answers (needs no token)."""
        return self._json("GET", "/", idempotent=True)  # type: ignore[no-any-return]

    def instances(self) -> list[str]:
        return self._json("GET", "/instances", idempotent=True)  # type: ignore[no-any-return]

    def create_instance(self, instance_id: str, **config: Any) -> str:
        """Create an instance with this configuration (unset fields take the defaults); the server's message."""
        return self._json("POST", f"/instances/{instance_id}", idempotent=False, json=config)["message"]  # type: ignore[no-any-return]

    def delete_instance(self, instance_id: str) -> str:
        return self._json("DELETE", f"/instances/{instance_id}", idempotent=True)["message"]  # type: ignore[no-any-return]

    def config(self, instance_id: str) -> dict[str, Any]:
        return self._json("GET", f"/instances/{instance_id}/config", idempotent=True)  # type: ignore[no-any-return]

    def update_config(self, instance_id: str, **changes: Any) -> str:
        """PATCH: change only these fields."""
        return self._json("PATCH", f"/instances/{instance_id}/config", idempotent=True, json=changes)["message"]  # type: ignore[no-any-return]

    def replace_config(self, instance_id: str, **config: Any) -> str:
        """PUT: the whole configuration; fields left out take the defaults."""
        return self._json("PUT", f"/instances/{instance_id}/config", idempotent=True, json=config)["message"]  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ array operations
    def quantize(self, instance_id: str, array: npt.ArrayLike, *, report: bool = False, validate: bool | None = None,
                 channel_dim: int | None = None, layer_name: str | None = None, wire: Wire | None = None
                 ) -> QuantizedArray:
        """Quantize `array` (1-4 dimensions; JSON: 2-D): its codes with the parameters they were made with."""
        options = _options(validate=validate, channel_dim=channel_dim, layer_name=layer_name, report=report or None)
        if (wire or self.wire) == "json":
            response = self.request("POST", f"/instances/{instance_id}/quantize", idempotent=False,
                                    json={"data": arrays.json_ready(array), **options})
            body = response.json()
            answered = response.headers
            return QuantizedArray(
                codes=np.asarray(body["data"]), scale=arrays.header_numbers(answered.get("X-Scale"), float),
                zero_point=arrays.header_numbers(answered.get("X-Zero-Point"), int),
                axis=_int_or_none(answered.get("X-Channel-Dim")), quantization_type=body["quantization_type"],
                block_size=_int_or_none(answered.get("X-Block-Size")), report=body.get("report"),
                headers=dict(answered))
        content, headers = arrays.encode(array)
        response = self.request("POST", f"/instances/{instance_id}/quantize", idempotent=False, content=content,
                                headers={**headers, "Accept": arrays.NPZ}, params=_query(options))
        members = arrays.decode_npz(response.content)
        axis, block = members.get("axis"), members.get("block_size")
        return QuantizedArray(
            codes=arrays.logical(members["data"], response.headers.get("X-Dtype")),
            scale=arrays.scalar_or_array(members.get("scale"), float),
            zero_point=arrays.scalar_or_array(members.get("zero_point"), int),
            axis=None if axis is None else int(axis), quantization_type=response.headers["X-Quantization-Type"],
            block_size=None if block is None else int(block), report=arrays.report_from_headers(response.headers),
            headers=dict(response.headers))

    def dequantize(self, instance_id: str, codes: npt.ArrayLike | QuantizedArray, *, scale: Any = None,
                   zero_point: Any = None, channel_dim: int | None = None, layer_name: str | None = None,
                   wire: Wire | None = None) -> npt.NDArray[np.float32]:
        """Float32 values of `codes`. A QuantizedArray brings its own parameters; otherwise explicit `scale` /
        `zero_point` (numbers, or one per channel with `channel_dim`) win over the instance's."""
        if isinstance(codes, QuantizedArray):
            if codes.block_size is not None:
                raise ValueError("block parameters cannot be sent to dequantize; use the instance's stored ones")
            scale = codes.scale if scale is None else scale
            zero_point = codes.zero_point if zero_point is None else zero_point
            channel_dim = codes.axis if channel_dim is None else channel_dim
            codes = codes.codes
        options = _options(channel_dim=channel_dim, layer_name=layer_name, scale=_listed(scale),
                           zero_point=_listed(zero_point))
        long_query = len(str(options.get("scale", ""))) + len(str(options.get("zero_point", ""))) > MAX_QUERY_CHARS
        if (wire or self.wire) == "json" or (long_query and np.ndim(codes) == 2):
            body = self._json("POST", f"/instances/{instance_id}/dequantize", idempotent=False,
                              json={"data": arrays.json_ready(codes), **options})
            return np.asarray(body["data"], dtype=np.float32)
        content, headers = arrays.encode(codes)
        response = self.request("POST", f"/instances/{instance_id}/dequantize", idempotent=False, content=content,
                                headers={**headers, "Accept": arrays.NPY}, params=_query(options))
        return arrays.decode_npy(response.content)

    @overload
    def quantize_dequantize(self, instance_id: str, array: npt.ArrayLike, *, report: Literal[False] = ...,
                            validate: bool | None = ..., channel_dim: int | None = ...,
                            layer_name: str | None = ...) -> npt.NDArray[np.float32]: ...

    @overload
    def quantize_dequantize(self, instance_id: str, array: npt.ArrayLike, *, report: Literal[True],
                            validate: bool | None = ..., channel_dim: int | None = ...,
                            layer_name: str | None = ...) -> tuple[npt.NDArray[np.float32], dict[str, Any] | None]: ...

    def quantize_dequantize(self, instance_id: str, array: npt.ArrayLike, *, report: bool = False,
                            validate: bool | None = None, channel_dim: int | None = None,
                            layer_name: str | None = None) -> Any:
        """Fake quantization: quantize then dequantize with the same parameters. With `report`, also the error
        report (the figures a binary answer carries in its headers)."""
        options = _options(validate=validate, channel_dim=channel_dim, layer_name=layer_name, report=report or None)
        content, headers = arrays.encode(array)
        response = self.request("POST", f"/instances/{instance_id}/quantize_dequantize", idempotent=False,
                                content=content, headers={**headers, "Accept": arrays.NPY}, params=_query(options))
        values = arrays.decode_npy(response.content)
        return (values, arrays.report_from_headers(response.headers)) if report else values

    # ------------------------------------------------------------------ calibration and parameters
    def calibrate(self, instance_id: str, batches: Sequence[npt.ArrayLike], *, channel_dim: int | None = None
                  ) -> dict[str, Any]:
        """Calibrate from representative 2-D batches (JSON: the route takes no binary body); the instance switches
        to CALIBRATED mode. The answer: scale, zero_point (and per-channel lists)."""
        body = {"data": [arrays.json_ready(batch) for batch in batches], **_options(channel_dim=channel_dim)}
        return self._json("POST", f"/instances/{instance_id}/calibrate", idempotent=False, json=body)  # type: ignore[no-any-return]

    def compute_params(self, instance_id: str, array: npt.ArrayLike, *, channel_idx: int | None = None,
                       channel_dim: int | None = None, layer_name: str | None = None) -> dict[str, Any]:
        """The scale and zero point the 2-D `array` would get; changes nothing on the server."""
        body = {"data": arrays.json_ready(array),
                **_options(channel_idx=channel_idx, channel_dim=channel_dim, layer_name=layer_name)}
        return self._json("POST", f"/instances/{instance_id}/compute_params", idempotent=True, json=body)  # type: ignore[no-any-return]

    def parameters(self, instance_id: str) -> dict[str, Any]:
        return self._json("GET", f"/instances/{instance_id}/parameters", idempotent=True)  # type: ignore[no-any-return]

    def import_parameters(self, instance_id: str, params: Mapping[str, Any]) -> str:
        body = {"parameters": _plain(params)}
        return self._json("POST", f"/instances/{instance_id}/parameters", idempotent=False, json=body)["message"]  # type: ignore[no-any-return]

    def layer_params(self, instance_id: str, layer: str) -> dict[str, Any]:
        return self._json("GET", f"/instances/{instance_id}/layer_params/{layer}", idempotent=True)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ statistics and quality
    def stats(self, instance_id: str) -> dict[str, Any]:
        return self._json("GET", f"/instances/{instance_id}/stats", idempotent=True)  # type: ignore[no-any-return]

    def reset_stats(self, instance_id: str) -> str:
        return self._json("POST", f"/instances/{instance_id}/reset_stats", idempotent=False)["message"]  # type: ignore[no-any-return]

    def clear_cache(self, instance_id: str) -> str:
        return self._json("POST", f"/instances/{instance_id}/clear_cache", idempotent=False)["message"]  # type: ignore[no-any-return]

    def evaluate(self, instance_id: str, array: npt.ArrayLike, candidates: Sequence[Mapping[str, Any]] | None = None,
                 target: float | Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run candidate configurations (the server's standard grid when None) on `array` without changing the
        instance: `{"candidates": [...], "recommended": ... or None, "target": ...}`. `target` is a minimum SQNR
        in dB, or the target object itself."""
        spec: dict[str, Any] = {}
        if candidates is not None:
            spec["candidates"] = [dict(candidate) for candidate in candidates]
        if target is not None:
            spec["target"] = dict(target) if isinstance(target, Mapping) else {"min_sqnr_db": float(target)}
        files: dict[str, Any] = {"file": ("data.npy", arrays.npy_bytes(np.asarray(array)), arrays.NPY)}
        data = {"spec": json.dumps(spec)} if spec else None
        return self._json("POST", f"/instances/{instance_id}/evaluate", idempotent=True, files=files, data=data)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ model jobs
    def submit_model(self, instance_id: str, path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                     channel_dim: int | None = None, progress: bool = False) -> Job:
        """Upload a checkpoint (`.safetensors` or `.npz`; several paths: the shards of one) as multipart `file`
        fields, streamed from disk, and start a model job on the instance (`channel_dim`: the per-channel axis,
        0 by default). `progress`: an upload bar."""
        paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
        total = sum(p.stat().st_size for p in paths)
        opened: list[IO[bytes]] = []
        handle: IO[bytes]
        try:
            with Bar("upload", total, unit="bytes", enabled=progress) as bar:
                files: list[tuple[str, Any]] = []
                offset = 0
                for p in paths:
                    handle = p.open("rb")
                    opened.append(handle)
                    files.append(("file", (p.name, ReadProgress(handle, bar, offset), arrays.OCTET)))
                    offset += p.stat().st_size
                response = self.request("POST", f"/instances/{instance_id}/jobs", idempotent=False, files=files,
                                        params=_query(_options(channel_dim=channel_dim)))
        finally:
            for handle in opened:
                handle.close()
        return Job(self, response.json())

    def job(self, job_id: str) -> Job:
        return Job(self, self.job_state(job_id))

    def job_state(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{job_id}", idempotent=True, not_found=JobNotFound)  # type: ignore[no-any-return]

    def jobs(self, *, instance_id: str | None = None, status: str | None = None) -> list[Job]:
        """Every job (following the pages), optionally of one instance or status."""
        params: dict[str, str] | None = _query(_options(instance_id=instance_id, status=status))
        found: list[Job] = []
        url: str | None = "/jobs"
        while url:
            page = self._json("GET", url, idempotent=True, params=params)
            found += [Job(self, item) for item in page["results"]]
            url, params = page.get("next"), None
        return found


# ---------------------------------------------------------------------------- helpers
def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text


def _options(**options: Any) -> dict[str, Any]:
    return {name: value for name, value in options.items() if value is not None}


def _query(options: Mapping[str, Any]) -> dict[str, str]:
    """Query options as the server reads them: booleans true/false, lists comma-separated."""
    query = {}
    for name, value in options.items():
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, list | tuple):
            query[name] = ",".join(repr(float(v)) if isinstance(v, float) else str(v) for v in value)
        else:
            query[name] = repr(value) if isinstance(value, float) else str(value)
    return query


def _listed(value: Any) -> Any:
    """A parameter as a number or a list of numbers (the float32 scale written as its shortest float)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
        items: list[Any] = [float(np.format_float_positional(v, unique=True, trim="-")) for v in arr.reshape(-1)]
    else:
        items = [int(v) for v in arr.reshape(-1)]
    return items[0] if arr.ndim == 0 else items


def _plain(value: Any) -> Any:
    """numpy values inside a parameters mapping as JSON numbers and lists."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


__all__ = ["DEFAULT_URL", "QuantizedArray", "QuantsiteClient", "QuantsiteError"]
