from django.apps import AppConfig


class QuantizersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "quantizers"
    verbose_name = "Quantizers"

    def ready(self) -> None:
        from . import checks, request_signals  # noqa: F401  (checks: registered on import)

        request_signals.disconnect_idle_receivers()
