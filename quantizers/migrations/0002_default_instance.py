"""The `default` instance, with the spec's defaults (the engine's QuantizationConfig defaults, frozen here so
that later changes of the defaults do not rewrite history)."""

import uuid

from django.db import migrations

DEFAULT_CONFIG = {
    "quantization_type": "INT8",
    "quantization_mode": "DYNAMIC",
    "num_bits": 8,
    "symmetric": False,
    "enable_cache": True,
    "cache_size": 1000,
    "enable_mixed_precision": False,
    "per_channel": False,
    "buffer_size": 0,
    "use_percentile": False,
    "min_percentile": 0.01,
    "max_percentile": 99.99,
    "error_on_nan": True,
    "error_on_inf": True,
    "optimize_memory": False,
    "enable_requantization": False,
    "requantization_threshold": 0.01,
    "outlier_threshold": None,
    "skip_layers": [],
    "quantize_bias": True,
    "quantize_weights_only": False,
    "mixed_precision_layers": [],
    "custom_quantization_config": {},
    "calibration_method": "MINMAX",
    # Added with 0004: a fresh database's `default` gets the engine's default rule; databases that ran this
    # migration before keep their `default` as it was and 0004 gives it `ort_tooling`.
    "qparams_rule": "onnx",
}


def create_default(apps, schema_editor):
    Instance = apps.get_model("quantizers", "QuantizerInstance")
    Parameters = apps.get_model("quantizers", "QuantizerParameters")
    Stats = apps.get_model("quantizers", "QuantizerStats")
    instance, created = Instance.objects.get_or_create(
        instance_id="default", defaults={"config": DEFAULT_CONFIG, "uid": uuid.uuid4()}
    )
    if created:
        Parameters.objects.create(instance=instance)
        Stats.objects.create(instance=instance)


def remove_default(apps, schema_editor):
    apps.get_model("quantizers", "QuantizerInstance").objects.filter(instance_id="default").delete()


class Migration(migrations.Migration):
    dependencies = [("quantizers", "0001_initial")]

    operations = [migrations.RunPython(create_default, remove_default)]
