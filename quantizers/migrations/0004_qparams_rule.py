"""`qparams_rule` for the instances stored before it existed: `ort_tooling`, the rule closest to the one they were
computed with (float64 scale), so that their stored and future parameters stay what they were. Instances created
afterwards (and a `default` created by a fresh database) get the engine's default, `onnx`."""

from django.db import migrations

EXISTING_RULE = "ort_tooling"


def add_rule(apps, schema_editor):
    Instance = apps.get_model("quantizers", "QuantizerInstance")
    for instance in Instance.objects.all():
        if "qparams_rule" not in instance.config:
            instance.config = {**instance.config, "qparams_rule": EXISTING_RULE}
            instance.save(update_fields=["config"])


def remove_rule(apps, schema_editor):
    Instance = apps.get_model("quantizers", "QuantizerInstance")
    for instance in Instance.objects.all():
        if "qparams_rule" in instance.config:
            instance.config = {k: v for k, v in instance.config.items() if k != "qparams_rule"}
            instance.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [("quantizers", "0003_stats_from_engine")]

    operations = [migrations.RunPython(add_rule, remove_rule)]
