"""Persistent state: the database is the truth that every worker reads.

- `QuantizerInstance`: the instance id, its full configuration, a `version` bumped by every change of
  configuration or parameters (workers rebuild their engine object when it differs) and a `cache_epoch` bumped by
  clear_cache (workers drop their dequantization cache when it differs). `uid` changes on every re-create, so a
  deleted and re-created instance never matches an old engine object.
- `QuantizerParameters`: everything `export_parameters` holds (global, per-channel, calibration state) but the
  per-layer parameters, which are `LayerParameters` rows (one per layer, with the job that set them).
- `Job`, `JobLayer`: a checkpoint quantized in the background, and its per-layer report.
- `QuantizerStats`: the counters, added in one UPDATE per request (`col = col + delta`, never read-modify-write),
  and the parameters of the latest quantize; beside them the quality figures of the calls that asked for a report
  (engine `QualityStats`: counters added the same way, the latest SQNR replaced, the lowest kept by a comparison
  inside the same UPDATE).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from django.core.validators import RegexValidator
from django.db import models

from engine import STATE_KEYS, QualityStats, Stats

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEFAULT_INSTANCE_ID = "default"


class QuantizerInstance(models.Model):
    instance_id = models.CharField(
        primary_key=True,
        max_length=64,
        validators=[RegexValidator(INSTANCE_ID_PATTERN, "1-64 characters of A-Z a-z 0-9 _ -")],
    )
    config = models.JSONField(help_text="The full configuration, as GET /instances/{id}/config returns it.")
    version = models.PositiveBigIntegerField(default=1, help_text="Bumped by every change of config or parameters.")
    cache_epoch = models.PositiveBigIntegerField(default=0, help_text="Bumped by clear_cache: every worker drops "
                                                                      "its cache.")
    uid = models.UUIDField(default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instance_id"]
        verbose_name = "quantizer instance"

    def __str__(self) -> str:
        return self.instance_id


class QuantizerParameters(models.Model):
    instance = models.OneToOneField(QuantizerInstance, on_delete=models.CASCADE, primary_key=True,
                                    related_name="parameters")
    is_calibrated = models.BooleanField(default=False)
    global_scale = models.FloatField(null=True, blank=True)
    global_zero_point = models.IntegerField(null=True, blank=True)
    per_channel_scales = models.JSONField(null=True, blank=True)
    per_channel_zero_points = models.JSONField(null=True, blank=True)
    channel_dim = models.IntegerField(null=True, blank=True)
    calibration = models.JSONField(null=True, blank=True)
    block_scales = models.JSONField(null=True, blank=True, help_text="Per-block scales (grouped instances), shaped "
                                    "like ONNX's scale initializer.")
    block_zero_points = models.JSONField(null=True, blank=True)
    block_size = models.PositiveIntegerField(null=True, blank=True)
    block_axis = models.IntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "parameters"
        verbose_name_plural = "parameters"

    def __str__(self) -> str:
        return f"parameters of {self.instance_id}"


class QuantizerStats(models.Model):
    """The engine's `Stats` and `QualityStats` fields (added below, from the dataclasses) and the parameters of the
    latest quantize."""

    instance = models.OneToOneField(QuantizerInstance, on_delete=models.CASCADE, primary_key=True,
                                    related_name="stats")
    last_params = models.JSONField(null=True, blank=True, help_text="Parameters of the latest quantize: dynamic "
                                                                     "modes dequantize with them.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "statistics"
        verbose_name_plural = "statistics"

    def __str__(self) -> str:
        return f"statistics of {self.instance_id}"


def _stats_column(field: dataclasses.Field[Any]) -> models.Field[Any, Any]:
    if field.metadata.get("counter"):
        return models.PositiveBigIntegerField(default=0)
    if field.type == "int":
        return models.BigIntegerField(default=0)
    return models.FloatField(default=0.0)


def _quality_column(field: dataclasses.Field[Any]) -> models.Field[Any, Any]:
    if field.metadata.get("counter"):
        return models.PositiveBigIntegerField(default=0)
    return models.FloatField(null=True, blank=True)  # an SQNR: null before any report, or for exact ones


for _field in dataclasses.fields(Stats):
    QuantizerStats.add_to_class(_field.name, _stats_column(_field))
for _field in dataclasses.fields(QualityStats):
    QuantizerStats.add_to_class(_field.name, _quality_column(_field))


# ---------------------------------------------------------------------------- model jobs
# A checkpoint quantized as a background job (quantizers/jobs.py), its per-layer report, and the per-layer
# parameters it leaves on the instance.
class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(QuantizerInstance, on_delete=models.CASCADE, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    channel_dim = models.IntegerField(null=True, blank=True, help_text="Per-channel axis asked by ?channel_dim=.")
    files = models.JSONField(default=list, help_text="One entry per shard: filename, format, input and output "
                                                     "(storage names), bytes_in, bytes_out.")
    tensors_done = models.PositiveIntegerField(default=0)
    tensors_total = models.PositiveIntegerField(default=0)
    bytes_done = models.PositiveBigIntegerField(default=0)
    bytes_total = models.PositiveBigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs started (a crashed worker's run is retried).")
    error = models.JSONField(null=True, blank=True)
    summary = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Written by the running worker with the "
                                        "progress: a running job whose heartbeat is stale lost its worker.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"


class JobLayer(models.Model):
    """One tensor of a succeeded job's report: the engine's report row as it gave it (`row`), with the name and
    SQNR as columns to sort and search on."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="layers")
    position = models.PositiveIntegerField(help_text="Order in the checkpoint (shards one after the other).")
    name = models.CharField(max_length=1024)
    sqnr_db = models.FloatField(null=True, blank=True)
    row = models.JSONField()

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="job_layer_position")]

    def __str__(self) -> str:
        return self.name


class LayerParameters(models.Model):
    """The stored `layer_params` of an instance, one row per layer (the other state keys are columns of
    QuantizerParameters): set by a job, an import or a calibration."""

    instance = models.ForeignKey(QuantizerInstance, on_delete=models.CASCADE, related_name="layer_rows")
    layer_name = models.CharField(max_length=1024)
    params = models.JSONField(help_text='{"scale": s | [s...], "zero_point": z | [z...], "channel_dim": int|null}')
    source_job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instance", "layer_name"]
        verbose_name = "layer parameters"
        verbose_name_plural = "layer parameters"
        constraints = [models.UniqueConstraint(fields=["instance", "layer_name"], name="layer_parameters_unique")]

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.layer_name}"


# The stored parameters are exactly the engine's state keys (a test checks it): `layer_params` as LayerParameters
# rows, every other key as a column of QuantizerParameters.
LAYER_PARAMS_KEY = "layer_params"
PARAMETER_COLUMNS = tuple(key for key in STATE_KEYS if key != LAYER_PARAMS_KEY)
PARAMETER_FIELDS = STATE_KEYS  # every stored key, wherever it is kept (quantizers/stored.py reads and writes them)
