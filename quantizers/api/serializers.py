"""Request and response shapes, named after the spec's models (the OpenAPI components carry these names).

Array payloads go through `quantizers.arrays` (vectorised checks), never through per-element serializer fields.
Configuration validation lives in the engine (`QuantizationConfig.from_dict`); `QuantizerConfigModel` here only
documents it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import threading
import typing
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField

from engine import STATS_FIELDS, QuantizationConfig, QuantizationType, Stats

from ..arrays import parse_2d, parse_batches, parse_codes

TYPE_NAMES = list(QuantizationType.__members__)

FLOAT_MATRIX = {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": {"type": "number"}}}
INT_MATRIX = {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": {"type": "integer"}}}
ANY_MATRIX = {"type": "array", "items": {"type": "array", "items": {}}}


class StrictBooleanField(serializers.BooleanField):
    """JSON true/false only (DRF's BooleanField also takes "yes", 1, "on" ...)."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
        raise AssertionError  # unreachable: fail() raises


class StrictIntegerField(serializers.IntegerField):
    """JSON integers only (DRF's IntegerField also takes "3", 3.0 and true)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(FLOAT_MATRIX)
class FloatMatrixField(serializers.Field):
    def to_internal_value(self, data: Any) -> Any:
        return parse_2d(data, field=self.field_name or "data")

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(INT_MATRIX)
class CodeMatrixField(FloatMatrixField):
    def to_internal_value(self, data: Any) -> Any:
        return parse_codes(data, field=self.field_name or "data")


@extend_schema_field({"type": "array", "minItems": 1, "items": FLOAT_MATRIX})
class BatchesField(FloatMatrixField):
    def to_internal_value(self, data: Any) -> Any:
        return parse_batches(data, field=self.field_name or "data")


_BOUND_FIELDS = threading.local()


class StrictSerializer(serializers.Serializer):
    """Rejects unknown keys, so a misspelt option is an error instead of being silently ignored.

    These serializers only validate request bodies, and their fields hold no per-request state: the fields are
    built and bound once per class (and thread) instead of deep-copied for every request, DRF's default, which
    cost a third of a small quantize."""

    @property
    def fields(self) -> Any:
        built = vars(_BOUND_FIELDS).setdefault("by_class", {})
        fields = built.get(type(self))
        if fields is None:
            fields = built[type(self)] = super().fields
        return fields

    @classmethod
    def bound_fields(cls) -> Any:
        """The fields, without building a serializer once they are built."""
        fields = vars(_BOUND_FIELDS).get("by_class", {}).get(cls)
        return fields if fields is not None else cls().fields

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["the body must be a JSON object"]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["unknown field"]}, code="unknown_field")
        return super().to_internal_value(data)

    @classmethod
    def field_table(cls) -> tuple[frozenset[str], tuple[tuple[str, Any], ...]]:
        """The field names and (name, field) pairs as plain containers (DRF's field mapping is a Python-level
        Mapping: each look-up through it is several calls), once per class and thread."""
        built = vars(_BOUND_FIELDS).setdefault("table", {})
        table = built.get(cls)
        if table is None:
            fields = cls.bound_fields()
            table = built[cls] = (frozenset(fields), tuple(fields.items()))
        return table  # type: ignore[no-any-return]

    @classmethod
    def absent_values(cls) -> dict[str, Any]:
        """What an absent optional field validates to (its default; nothing when it has none), for the fields whose
        default is a fixed value, computed once per class and thread (a callable default is called per request)."""
        built = vars(_BOUND_FIELDS).setdefault("absent", {})
        values = built.get(cls)
        if values is None:
            values = built[cls] = {}
            for name, field in cls.bound_fields().items():
                if not field.required and not callable(field.default):
                    with contextlib.suppress(SkipField):  # no default: left out
                        values[name] = field.get_default()
        return values  # type: ignore[no-any-return]

    @classmethod
    def validated(cls, data: Any) -> dict[str, Any]:
        """The validated body. A valid body goes through each field's own validation and nothing else (these
        serializers declare fields only: no validate() or validators of their own); the serializer's run, which
        wraps it in error collection and copies, is kept for a body that fails, so every error reads as before.
        That run cost about a tenth of a small quantize."""
        names, fields = cls.field_table()
        if type(data) is dict and data.keys() <= names:
            absent = cls.absent_values()
            out: dict[str, Any] = {}
            try:
                for name, field in fields:
                    if name in data:
                        out[name] = field.run_validation(data[name])
                    elif name in absent:
                        out[name] = absent[name]
                    elif field.required:
                        raise serializers.ValidationError("required")
                    else:  # what run_validation gives an absent field
                        with contextlib.suppress(SkipField):  # no default: left out
                            out[name] = field.get_default()
            except (serializers.ValidationError, DjangoValidationError):
                pass  # the serializer's run below reports it
            else:
                return out
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


LAYER_NAME = {"required": False, "allow_null": True, "default": None, "max_length": 256,
              "help_text": "Layer name for mixed precision and per-layer settings."}
CHANNEL_DIM_HELP = "Axis of the channels for per-channel operation (negative counts from the end; default 0)."
REPORT_HELP = ("Report what the quantization cost: SQNR, max / RMS / mean error, clipped values and range, against "
               "the float32 input with the exact dequantized values (JSON answers: `report`; binary answers: "
               "X-Report-* headers). Implies validate (the clipped count is part of the report).")


class QuantizationSerializer(StrictSerializer):
    data = FloatMatrixField(help_text="2-D array of data to quantize.")
    validate = StrictBooleanField(required=False, default=True,
                                  help_text="Scan for NaN/Inf and count clipped values (structural checks always run).")
    channel_dim = StrictIntegerField(required=False, allow_null=True, default=None, help_text=CHANNEL_DIM_HELP)
    layer_name = StrictCharField(**LAYER_NAME)
    report = StrictBooleanField(required=False, default=False, help_text=REPORT_HELP)


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "array", "minItems": 1, "items": {"type": "number"}}]})
class ParameterValueField(serializers.Field):
    """A scale or zero point given with a request: a number, or a list of one per channel. The engine checks the
    values (finite positive float32 scales, zero points in the type's range), as it does for an import."""

    def to_internal_value(self, data: Any) -> Any:
        values = data if isinstance(data, list) and data else [data]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            raise serializers.ValidationError("must be a number or a non-empty list of numbers")
        return data


class DequantizationSerializer(StrictSerializer):
    data = CodeMatrixField(help_text="2-D array of quantized codes (floats for FLOAT16 / NONE instances).")
    channel_dim = StrictIntegerField(required=False, allow_null=True, default=None, help_text=CHANNEL_DIM_HELP)
    layer_name = StrictCharField(**LAYER_NAME)
    scale = ParameterValueField(required=False, allow_null=True, default=None,
                                help_text="Dequantize with this scale (a list: one per channel along channel_dim), "
                                          "whatever the instance has stored.")
    zero_point = ParameterValueField(required=False, allow_null=True, default=None,
                                     help_text="With scale: the zero point(s) (default 0, as in ONNX).")


class StrictFloatField(serializers.FloatField):
    """JSON numbers only (DRF's FloatField also takes "30" and true)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return float(super().to_internal_value(data))


class TargetSerializer(StrictSerializer):
    min_sqnr_db = StrictFloatField(help_text="The least SQNR (dB) a recommended candidate must reach.")


class EvaluationSpecSerializer(StrictSerializer):
    """What the multipart form's `spec` part holds (the JSON body holds it beside `data`)."""

    candidates = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, default=None, min_length=1,
        help_text="Partial configurations over the instance's own (as PATCH /instances/{id}/config takes them); "
                  "absent or null: the standard grid.")
    target = TargetSerializer(required=False, allow_null=True, default=None,
                              help_text="With a target, `recommended` names the smallest candidate that meets it.")


class EvaluationSerializer(EvaluationSpecSerializer):
    data = FloatMatrixField(help_text="2-D array to evaluate the candidates on.")


class CalibrationSerializer(StrictSerializer):
    data = BatchesField(help_text="List of 2-D arrays of representative data.")
    channel_dim = StrictIntegerField(required=False, allow_null=True, default=None,
                                     help_text="Channel axis for per-channel instances (default 0).")


class QuantizationParamsSerializer(StrictSerializer):
    data = FloatMatrixField(help_text="2-D array of data to compute parameters for.")
    channel_idx = StrictIntegerField(required=False, allow_null=True, default=None,
                                     help_text="Give the parameters of this channel (slice along channel_dim).")
    channel_dim = StrictIntegerField(required=False, allow_null=True, default=None, help_text=CHANNEL_DIM_HELP)
    layer_name = StrictCharField(**LAYER_NAME)


class ImportExportParamsSerializer(StrictSerializer):
    parameters = serializers.DictField(help_text="Parameters as GET /instances/{id}/parameters returns them.")


# ---------------------------------------------------------------------------- configuration (documentation)
def _config_field(field: dataclasses.Field[Any], annotation: Any, default: Any) -> serializers.Field:
    """The schema of one engine configuration field: its type, default, bounds and description."""
    common: dict[str, Any] = {"help_text": field.metadata.get("help", "")}
    bounds = {key: field.metadata[key] for key in ("minimum", "maximum") if field.metadata.get(key) is not None}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return serializers.ChoiceField(list(annotation.__members__), default=default, **common)
    if annotation is bool:
        return serializers.BooleanField(default=default, **common)
    if annotation is int:
        return serializers.IntegerField(default=default, min_value=bounds.get("minimum"),
                                        max_value=bounds.get("maximum"), **common)
    if annotation in (float, float | None):
        return serializers.FloatField(default=default, allow_null=default is None, min_value=bounds.get("minimum"),
                                      max_value=bounds.get("maximum"), **common)
    if annotation == tuple[str, ...]:
        return serializers.ListField(child=serializers.CharField(), default=list, **common)
    return serializers.DictField(child=serializers.DictField(), default=dict, **common)


def _config_serializer() -> type[serializers.Serializer]:
    """The spec's QuantizerConfigModel, derived from the engine's dataclass (which alone validates)."""
    defaults = QuantizationConfig().to_dict()
    hints = typing.get_type_hints(QuantizationConfig)
    fields = {f.name: _config_field(f, hints[f.name], defaults[f.name]) for f in dataclasses.fields(QuantizationConfig)}
    return type("QuantizerConfigModel", (serializers.Serializer,), fields)


QuantizerConfigModel = _config_serializer()


# ---------------------------------------------------------------------------- responses (documentation)
class MessageResponse(serializers.Serializer):
    message = serializers.CharField()


class HealthResponse(serializers.Serializer):
    status = serializers.CharField()
    service = serializers.CharField()


class ErrorResponse(serializers.Serializer):
    detail = serializers.CharField(help_text="What was wrong.")
    code = serializers.CharField(help_text="Stable error code.")
    field = serializers.CharField(required=False, help_text="The field at fault, where one is.")


@extend_schema_field(ANY_MATRIX)
class MatrixOutField(serializers.Field):
    def to_representation(self, value: Any) -> Any:
        return value


SQNR_HELP = ("10 log10(sum x^2 / sum (x - x_hat)^2) in dB; null (never Infinity) when the reconstruction is exact "
             "or the input is all zeros.")


class QualityReportResponse(serializers.Serializer):
    """engine.QualityReport as JSON (a test checks the fields against the dataclass)."""

    sqnr_db = serializers.FloatField(allow_null=True, help_text=SQNR_HELP)
    max_abs_error = serializers.FloatField(help_text="max |x_hat - x| over the finite values.")
    rms_error = serializers.FloatField(help_text="sqrt(mean (x_hat - x)^2).")
    mean_error = serializers.FloatField(help_text="mean (x_hat - x): the reconstruction's bias.")
    clipped = serializers.IntegerField(help_text="Values that saturated (and non-finite inputs, where allowed).")
    clipped_share = serializers.FloatField(help_text="clipped / values.")
    range = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2,
                                  help_text="[min, max] of the input's finite values.")
    values = serializers.IntegerField(help_text="Elements of the input.")
    channel_sqnr_db = serializers.ListField(
        child=serializers.FloatField(allow_null=True), required=False,
        help_text="Per-channel parameters only: the SQNR of each channel along their axis (null as sqnr_db).")


class ArrayResponse(serializers.Serializer):
    data = MatrixOutField()
    original_shape = serializers.ListField(child=serializers.IntegerField())
    report = QualityReportResponse(required=False, help_text="With report: true (quantize_dequantize).")


class QuantizationResponse(serializers.Serializer):
    data = MatrixOutField(help_text="Quantized data: integer codes (floats for FLOAT16 / NONE).")
    quantization_type = serializers.ChoiceField(TYPE_NAMES)
    original_shape = serializers.ListField(child=serializers.IntegerField())
    report = QualityReportResponse(required=False, help_text="With report: true: what the quantization cost.")


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]})
class ScalarOrListField(serializers.Field):
    def to_representation(self, value: Any) -> Any:
        return value


class ScaleZeroPointResponse(serializers.Serializer):
    scale = ScalarOrListField(help_text="Scale; a list with one per channel for per-channel parameters.")
    zero_point = ScalarOrListField(help_text="Zero point (an integer); a list for per-channel parameters.")


class CalibrationResponse(ScaleZeroPointResponse):
    message = serializers.CharField()
    per_channel_scales = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    per_channel_zero_points = serializers.ListField(child=serializers.IntegerField(), allow_null=True)


class QualityStatsResponse(serializers.Serializer):
    """engine.quality_summary's object."""

    latest_sqnr_db = serializers.FloatField(allow_null=True, help_text="SQNR of the latest reported call (null "
                                            "before any, or when it was exact or all zeros).")
    min_sqnr_db = serializers.FloatField(allow_null=True, help_text="The lowest SQNR reported since the last reset.")
    clipped_share = serializers.FloatField(allow_null=True, help_text="Clipped values / values over the reported "
                                           "calls.")
    reported_calls = serializers.IntegerField(help_text="Calls with report since the last reset.")


def _stats_response() -> type[serializers.Serializer]:
    """The spec's StatsResponse: the engine's Stats fields (integers and floats), plus the latest per-channel
    parameters."""
    hints = typing.get_type_hints(Stats)
    fields: dict[str, serializers.Field] = {
        name: serializers.IntegerField() if hints[name] is int else serializers.FloatField() for name in STATS_FIELDS
    }
    fields["last_channel_scales"] = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    fields["last_channel_zero_points"] = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    fields["quality"] = QualityStatsResponse(help_text="Figures of the calls that asked for a report (null before "
                                                       "any): plain calls add nothing.")
    return type("StatsResponse", (serializers.Serializer,), fields)


StatsResponse = _stats_response()


class EvaluatedCandidateResponse(serializers.Serializer):
    """engine.Candidate as JSON."""

    config = QuantizerConfigModel(help_text="The full configuration, as POST /instances/{id} accepts it.")
    bits = serializers.IntegerField(help_text="Bits per value.")
    bytes = serializers.IntegerField(help_text="Codes at their bit width (4-bit codes: half a byte each) plus 4 bytes "
                                               "per scale and per zero point.")
    sqnr_db = serializers.FloatField(allow_null=True, help_text=SQNR_HELP)
    max_abs_error = serializers.FloatField()
    clipped_share = serializers.FloatField()
    ms = serializers.FloatField(help_text="Time of the candidate's calibration (if any) and fake quantization.")


class EvaluationResponse(serializers.Serializer):
    candidates = EvaluatedCandidateResponse(many=True)
    recommended = EvaluatedCandidateResponse(allow_null=True, help_text="The candidate with the fewest bytes that "
                                             "meets the target (ties: higher SQNR, then the earlier candidate); null "
                                             "without a target or when none meets it. PATCH /instances/{id}/config "
                                             "with its config applies it.")
    target = TargetSerializer(allow_null=True)


class EvaluationUploadRequest(serializers.Serializer):
    file = serializers.FileField(help_text=".npy file (numeric dtype, 1-4 dimensions); never unpickled.")
    spec = serializers.CharField(required=False, help_text='JSON object: {"candidates": [...], "target": '
                                                           '{"min_sqnr_db": 30}}, both optional.')


class UploadResponse(serializers.Serializer):
    message = serializers.CharField()
    operation = serializers.CharField()
    shape = serializers.ListField(child=serializers.IntegerField())
    dtype = serializers.CharField()
    original_shape = serializers.ListField(child=serializers.IntegerField())
    quantization_type = serializers.CharField()
    data = serializers.JSONField()


class JobUploadRequest(serializers.Serializer):
    file = serializers.ListField(child=serializers.FileField(), min_length=1,
                                 help_text=".safetensors or .npz checkpoint; several for a sharded checkpoint, each "
                                           "quantized into its own output shard. Never unpickled.")


class UploadRequest(serializers.Serializer):
    file = serializers.FileField(help_text=".npy file (numeric dtype, 1-4 dimensions); never unpickled.")
