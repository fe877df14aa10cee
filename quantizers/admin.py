"""The operator's tool: instances with their configuration (edited through the engine's validation), parameters
and statistics, and actions that go through the same services as the API."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from engine import QuantizationMode, QuantizationType

from . import registry, services
from .exceptions import ServiceError
from .forms import CONFIG_FIELDS, InstanceForm
from .models import DEFAULT_INSTANCE_ID, QuantizerInstance
from .overview import instance_overview
from .selectors import STATS_FIELDS

_BREAK_AFTER_UNDERSCORE = mark_safe("_<wbr>")


def _pretty(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


class CalibratedFilter(admin.SimpleListFilter):
    title = "calibrated"
    parameter_name = "calibrated"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> QuerySet[QuantizerInstance]:
        if self.value() in ("yes", "no"):
            return queryset.filter(parameters__is_calibrated=self.value() == "yes")
        return queryset


class ConfigValueFilter(admin.SimpleListFilter):
    key = ""
    # Not `choices`: that name is SimpleListFilter's method that renders the filter's links.
    values: tuple[str, ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(c, c) for c in self.values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> QuerySet[QuantizerInstance]:
        if self.value():
            return queryset.filter(**{f"config__{self.key}": self.value()})
        return queryset


class TypeFilter(ConfigValueFilter):
    title = "quantization type"
    parameter_name = "type"
    key = "quantization_type"
    values = tuple(QuantizationType.__members__)


class ModeFilter(ConfigValueFilter):
    title = "quantization mode"
    parameter_name = "mode"
    key = "quantization_mode"
    values = tuple(QuantizationMode.__members__)


@admin.register(QuantizerInstance)
class QuantizerInstanceAdmin(admin.ModelAdmin):
    form = InstanceForm
    list_display = ("instance_id", "quantization", "flags", "calls", "clipped_share", "updated")
    list_filter = (TypeFilter, ModeFilter, CalibratedFilter)
    search_fields = ("instance_id",)
    readonly_fields = ("version", "cache_epoch", "created_at", "updated_at", "parameters_view", "stats_view")
    actions = ("reset_statistics", "clear_cache", "export_parameters", "duplicate")
    fieldsets = (
        (None, {"fields": ("instance_id",)}),
        ("Configuration", {"fields": CONFIG_FIELDS,
                           "description": "One input per setting of the engine's configuration; the engine checks "
                                          "the whole configuration when it is saved."}),
        ("Parameters", {"fields": ("parameters_view",)}),
        ("Statistics", {"fields": ("stats_view",)}),
        ("Bookkeeping", {"fields": ("version", "cache_epoch", "created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuantizerInstance]:
        return super().get_queryset(request).select_related("parameters", "stats")

    def get_readonly_fields(self, request: HttpRequest, obj: QuantizerInstance | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "instance_id") if obj is not None else self.readonly_fields

    # ------------------------------------------------------------------ columns
    # Compact cells, so that the list fits a 1280 px screen beside the navigation and filter sidebars: type, bits
    # and mode share a cell (a mode breaks after its underscores), the flags that are on share another.
    @admin.display(description="type · mode")
    def quantization(self, obj: QuantizerInstance) -> str:
        mode = format_html_join(_BREAK_AFTER_UNDERSCORE, "{}", ((part,) for part in
                                                                 str(obj.config.get("quantization_mode")).split("_")))
        return format_html('{} <span class="quiet">{}&nbsp;bit</span><br>{}', obj.config.get("quantization_type"),
                           obj.config.get("num_bits"), mode)

    @admin.display(description="flags")
    def flags(self, obj: QuantizerInstance) -> str:
        params = getattr(obj, "parameters", None)
        on = [label for label, value in (("symmetric", obj.config.get("symmetric")),
                                         ("per\u00a0channel", obj.config.get("per_channel")),
                                         ("calibrated", params is not None and params.is_calibrated)) if value]
        return format_html_join(mark_safe("<br>"), "{}", ((label,) for label in on)) if on else "-"

    @admin.display(description="calls")
    def calls(self, obj: QuantizerInstance) -> int:
        stats = getattr(obj, "stats", None)
        return 0 if stats is None else stats.quantize_calls + stats.dequantize_calls

    @admin.display(description="clipped")
    def clipped_share(self, obj: QuantizerInstance) -> str:
        stats = getattr(obj, "stats", None)
        if stats is None or not stats.total_values:
            return "-"
        return f"{100.0 * stats.clipped_values / stats.total_values:.3f}\u00a0%"

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: QuantizerInstance) -> str:
        when = localtime(obj.updated_at)
        return format_html('<span class="nowrap" title="{}">{}<br>{}</span>', when.isoformat(),
                           f"{when:%Y-%m-%d}", f"{when:%H:%M}")

    @admin.display(description="parameters")
    def parameters_view(self, obj: QuantizerInstance) -> str:
        # On the add page (also when it comes back with errors) the object is unsaved, though its pk is set from
        # the form: a duplicate id would otherwise show, and build an engine from, the existing instance's row.
        if obj.pk is None or obj._state.adding or not hasattr(obj, "parameters"):
            return "-"
        return _pretty(registry.active().get(obj).export_parameters())

    @admin.display(description="statistics")
    def stats_view(self, obj: QuantizerInstance) -> str:
        if obj.pk is None or obj._state.adding or not hasattr(obj, "stats"):
            return "-"
        return _pretty({name: getattr(obj.stats, name) for name in STATS_FIELDS})

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The side panel beside the form: parameters, statistics with rates, the quality charts."""
        instance = self.get_object(request, object_id)
        overview = instance_overview(instance) if instance is not None else None
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "overview": overview})

    # ------------------------------------------------------------------ saving and deleting through services
    def save_model(self, request: HttpRequest, obj: QuantizerInstance, form: Any, change: bool) -> None:
        config = form.config_dict()
        if change:
            services.instance_update_config(instance_id=obj.instance_id, config=config)
        else:
            services.instance_create(instance_id=obj.instance_id, config=config)
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: QuantizerInstance | None = None) -> bool:
        if obj is not None and obj.instance_id == DEFAULT_INSTANCE_ID:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: QuantizerInstance) -> None:
        services.instance_delete(instance_id=obj.instance_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> None:
        for instance_id in queryset.exclude(pk=DEFAULT_INSTANCE_ID).values_list("instance_id", flat=True):
            services.instance_delete(instance_id=instance_id)

    # ------------------------------------------------------------------ actions
    @admin.action(description="Reset statistics")
    def reset_statistics(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> None:
        for instance_id in queryset.values_list("instance_id", flat=True):
            services.instance_reset_stats(instance_id=instance_id)
        self.message_user(request, f"Statistics reset for {queryset.count()} instance(s).", messages.SUCCESS)

    @admin.action(description="Clear the dequantization cache (every worker)")
    def clear_cache(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> None:
        for instance_id in queryset.values_list("instance_id", flat=True):
            services.instance_clear_cache(instance_id=instance_id)
        self.message_user(request, f"Cache cleared for {queryset.count()} instance(s).", messages.SUCCESS)

    @admin.action(description="Export parameters as JSON")
    def export_parameters(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> HttpResponse:
        payload = {obj.instance_id: registry.active().get(obj).export_parameters() for obj in queryset}
        response = HttpResponse(json.dumps(payload, indent=2), content_type="application/json")
        response["Content-Disposition"] = 'attachment; filename="quantizer-parameters.json"'
        return response

    @admin.action(description="Duplicate (as <id>_copy)")
    def duplicate(self, request: HttpRequest, queryset: QuerySet[QuantizerInstance]) -> None:
        for instance_id in queryset.values_list("instance_id", flat=True):
            new_id = f"{instance_id}_copy"[:64]
            try:
                services.instance_duplicate(source_id=instance_id, new_id=new_id)
                self.message_user(request, f"Created {new_id}.", messages.SUCCESS)
            except ServiceError as exc:
                self.message_user(request, f"{instance_id}: {exc.detail}", messages.ERROR)
