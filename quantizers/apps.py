from django.apps import AppConfig


class QuantizersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "quantizers"
    verbose_name = "Quantizers"
