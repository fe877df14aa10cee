"""The model jobs' answers, for the OpenAPI schema (the views answer with quantizers.jobs' dicts). The report row
is derived from the engine's LayerReport, so the schema follows the engine."""

from __future__ import annotations

import dataclasses
from typing import Any

from rest_framework import serializers

from engine import REPORT_FIELDS, LayerReport

from ..models import Job


class JobLinks(serializers.Serializer):
    self = serializers.CharField(help_text="/jobs/{job_id}")
    report = serializers.CharField(help_text="/jobs/{job_id}/report")
    artifact = serializers.CharField(help_text="/jobs/{job_id}/artifact (?shard=N for sharded jobs)")


class JobSelfLink(serializers.Serializer):
    self = serializers.CharField(help_text="/jobs/{job_id}")


class JobCreated(serializers.Serializer):
    job_id = serializers.UUIDField()
    instance_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Job.Status.values, help_text="queued; inline (no broker configured) "
                                     "the job has already run and this is its final status")
    links = JobSelfLink()


class JobProgress(serializers.Serializer):
    tensors_done = serializers.IntegerField()
    tensors_total = serializers.IntegerField()
    bytes_done = serializers.IntegerField()
    bytes_total = serializers.IntegerField()


class WorstLayer(serializers.Serializer):
    name = serializers.CharField()
    sqnr_db = serializers.FloatField(allow_null=True)


class JobSummary(serializers.Serializer):
    tensors_quantized = serializers.IntegerField()
    tensors_kept = serializers.IntegerField()
    bytes_in = serializers.IntegerField()
    bytes_out = serializers.IntegerField()
    compression_ratio = serializers.FloatField(allow_null=True)
    sqnr_db = serializers.FloatField(allow_null=True, help_text="Size-weighted over the quantized layers.")
    worst_layers = WorstLayer(many=True, help_text="The five lowest-SQNR layers, lowest first.")


class JobError(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


class JobResponse(serializers.Serializer):
    job_id = serializers.UUIDField()
    instance_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Job.Status.values)
    progress = JobProgress()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = JobError(allow_null=True)
    summary = JobSummary(allow_null=True, help_text="When succeeded.")
    links = JobLinks()


class JobPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = JobResponse(many=True)


def _report_field(field: dataclasses.Field[Any]) -> serializers.Field:
    kind = str(field.type)
    nullable = "None" in kind
    if kind.startswith("list"):
        return serializers.ListField(child=serializers.IntegerField())
    if kind.startswith("int"):
        return serializers.IntegerField(allow_null=nullable)
    if kind.startswith("float"):
        return serializers.FloatField(allow_null=nullable)
    return serializers.CharField(allow_null=nullable)


JobLayerRow = type("JobLayerRow", (serializers.Serializer,), {
    f.name: _report_field(f) for f in dataclasses.fields(LayerReport) if f.name in REPORT_FIELDS})


class JobReport(serializers.Serializer):
    layers = JobLayerRow(many=True)  # type: ignore[operator]
    summary = JobSummary()
