"""Query options: each route declares the options it takes, once; requests are parsed and the OpenAPI query
parameters are derived from that declaration.

A view names its set in `query_options` (an `@action` keyword for the viewset's actions); anything in the query
string outside the set is a 400. DRF's renderer override (`?format=`) is allowed on routes with several renderers
only, where the schema documents it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework.settings import api_settings

from ..exceptions import BadRequest
from ..models import Job
from ..services import OPERATIONS
from .serializers import REPORT_HELP


def _bool(raw: str, option: Option) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise BadRequest(f"{option.name} must be true or false; got {raw!r}", field=option.name)


def _int(raw: str, option: Option) -> int | None:
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{option.name} must be an integer; got {raw!r}", field=option.name) from None


def _str(raw: str, option: Option) -> str | None:
    return raw or None


def _enum(raw: str, option: Option) -> str:
    if raw not in option.choices:
        raise BadRequest(f"{option.name} must be one of {', '.join(option.choices)}; got {raw!r}", field=option.name)
    return raw


def _list(convert: Callable[[str], Any], kind: str) -> Callable[[str, Option], list[Any]]:
    def parse(raw: str, option: Option) -> list[Any]:
        try:
            values = [convert(item) for item in raw.split(",")]
        except ValueError:
            raise BadRequest(f"{option.name} must be a comma-separated list of {kind}; got {raw!r}",
                             field=option.name) from None
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise BadRequest(f"{option.name} must hold finite numbers; got {raw!r}", field=option.name)
        return values
    return parse


# kind -> (parse, OpenAPI type)
KINDS: dict[str, tuple[Callable[[str, Option], Any], Any]] = {
    "bool": (_bool, bool),
    "int": (_int, int),
    "str": (_str, str),
    "enum": (_enum, str),
    "floats": (_list(float, "numbers"), {"type": "array", "items": {"type": "number"}}),
    "ints": (_list(int, "integers"), {"type": "array", "items": {"type": "integer"}}),
}


@dataclass(frozen=True)
class Option:
    name: str
    kind: str
    default: Any = None
    choices: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}")

    def parse(self, raw: str | None) -> Any:
        return self.default if raw is None else KINDS[self.kind][0](raw, self)

    def parameter(self) -> OpenApiParameter:
        listed = self.kind in ("floats", "ints")
        return OpenApiParameter(
            self.name, KINDS[self.kind][1], OpenApiParameter.QUERY, required=False,
            description=self.description, enum=list(self.choices) or None, default=self.default,
            style="form" if listed else None, explode=False if listed else None,
        )


class Options:
    """The query options of a route."""

    def __init__(self, *options: Option) -> None:
        self.options = {option.name: option for option in options}

    def parse(self, query: Mapping[str, str], *, renderers: int = 1) -> dict[str, Any]:
        """The declared options, parsed (absent ones take their default); unknown names are a 400."""
        allowed = set(self.options)
        if renderers > 1:
            allowed.add(api_settings.URL_FORMAT_OVERRIDE)
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise BadRequest(f"unknown query parameter: {unknown[0]}", field=unknown[0])
        return {name: option.parse(query.get(name)) for name, option in self.options.items()}

    def parameters(self) -> list[OpenApiParameter]:
        return [option.parameter() for option in self.options.values()]


VALIDATE = Option("validate", "bool", default=True,
                  description="Scan for NaN/Inf and count clipped values (structural checks always run).")
CHANNEL_DIM = Option("channel_dim", "int", description="Axis of the channels for per-channel operation.")
LAYER_NAME = Option("layer_name", "str", description="Layer name for mixed precision and per-layer settings.")
OPERATION = Option("operation", "enum", default="quantize", choices=OPERATIONS)
REPORT = Option("report", "bool", default=False, description=REPORT_HELP)
BINARY_ONLY = " Binary bodies only (a JSON body carries it in the body)."

NONE = Options()
# quantize, dequantize, quantize_dequantize: options of a .npy or octet-stream body.
ARRAY_BODY = Options(*(replace(o, description=o.description + BINARY_ONLY) for o in (VALIDATE, CHANNEL_DIM,
                                                                                   LAYER_NAME)))
# quantize, quantize_dequantize: and the quality report (its figures in X-Report-* headers).
QUANTIZE_BODY = Options(*ARRAY_BODY.options.values(), replace(REPORT, description=REPORT.description + BINARY_ONLY))
UPLOAD = Options(OPERATION, VALIDATE, CHANNEL_DIM, LAYER_NAME)
# dequantize: explicit parameters as well, written as the X-Scale / X-Zero-Point headers of a quantize answer.
DEQUANTIZE_BODY = Options(
    *(option for name, option in ARRAY_BODY.options.items() if name != "validate"),  # nothing to validate in codes
    Option("scale", "floats", description="Dequantize with this scale (one per channel along channel_dim), whatever "
                                          "the instance has stored." + BINARY_ONLY),
    Option("zero_point", "ints", description="With scale: the zero point(s) (default 0, as in ONNX)." + BINARY_ONLY),
)

# Model jobs: POST /instances/{id}/jobs and GET /jobs.
JOB_CREATE = Options(
    Option("filename", "str", description="application/octet-stream bodies: the checkpoint's file name "
                                          "(model.safetensors or model.npz), which says its format."),
    Option("channel_dim", "int", description="Per-channel quantization along this axis (default 0, the output "
                                             "channels of a [out, in] weight)."),
)
JOB_LIST = Options(
    Option("instance_id", "str", description="Only this instance's jobs."),
    Option("status", "enum", choices=tuple(Job.Status.values),
           description="Only jobs in this status."),
    Option("page", "int", description="Page number (from 1)."),
)
JOB_ARTIFACT = Options(Option("shard", "int", description="Sharded jobs: the output shard, numbered from 0 in the "
                                                          "order the files were uploaded (default 0)."))
