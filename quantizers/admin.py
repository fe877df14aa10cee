"""The operator's tool: instances with their configuration (edited through the engine's validation), parameters
and statistics, and actions that go through the same services as the API."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime

from engine import QuantizationMode, QuantizationType

from . import jobs, registry, services
from .exceptions import InstanceExists, ServiceError
from .forms import CONFIG_FIELDS, InstanceForm
from .models import DEFAULT_INSTANCE_ID, Job, JobLayer, QuantizerInstance
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
    def changeform_view(self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The form's uniqueness check and the INSERT are two steps: someone else (the API, another admin) may
        create the same id in between. The database's unique constraint then refuses the INSERT (the service
        raises InstanceExists, the view's transaction rolls back), and the add page comes back with the reason
        instead of a server error."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except InstanceExists as exc:
            self.message_user(request, f"{exc.detail} (created while this form was being sent): choose another id",
                              messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

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


# ---------------------------------------------------------------------------- model jobs
# (Its own block: the jobs' list, their page with the per-layer report, and the cancel / delete / re-run actions,
# all through quantizers.jobs.)
def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f}\u00a0{unit}" if unit == "B" else f"{nbytes:.1f}\u00a0{unit}"
        nbytes /= 1024  # type: ignore[assignment]
    return "-"


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("short_id", "status", "progress_bar", "instance", "size_in", "size_out", "duration", "created_at")
    list_filter = ("status", "instance")
    search_fields = ("id", "instance__instance_id")
    actions = ("cancel_jobs", "rerun_jobs", "delete_jobs")
    fields = ("id", "instance", "status", "progress_bar", "files_view", "size_in", "size_out", "duration", "attempts",
              "created_at", "started_at", "finished_at", "error", "summary_view", "artifact_links", "report_view")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs start from an upload (POST /instances/{id}/jobs) or manage.py quantize_model

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False  # read-only page; the actions change jobs

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)
        found.pop("delete_selected", None)  # delete_jobs goes through the service (files too)
        return found

    @admin.display(description="job")
    def short_id(self, obj: Job) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="progress")
    def progress_bar(self, obj: Job) -> str:
        total = obj.bytes_total or 1
        done = obj.bytes_total if obj.status == Job.Status.SUCCEEDED else obj.bytes_done
        return format_html('<progress max="{}" value="{}"></progress> {}/{}', total, done, obj.tensors_done,
                           obj.tensors_total)

    @admin.display(description="in")
    def size_in(self, obj: Job) -> str:
        return _size(obj.bytes_total)

    @admin.display(description="out")
    def size_out(self, obj: Job) -> str:
        return _size((obj.summary or {}).get("bytes_out"))

    @admin.display(description="duration")
    def duration(self, obj: Job) -> str:
        if obj.started_at is None:
            return "-"
        end = obj.finished_at or timezone.now()
        return f"{(end - obj.started_at).total_seconds():.1f}\u00a0s"

    @admin.display(description="files")
    def files_view(self, obj: Job) -> str:
        return format_html_join(mark_safe("<br>"), "{} ({})",
                                ((f["filename"], _size(f["bytes_in"])) for f in obj.files))

    @admin.display(description="summary")
    def summary_view(self, obj: Job) -> str:
        return _pretty(obj.summary) if obj.summary else "-"

    @admin.display(description="artifact")
    def artifact_links(self, obj: Job) -> str:
        if obj.status != Job.Status.SUCCEEDED:
            return "-"
        return format_html_join(mark_safe("<br>"), '<a href="{}">{}</a>', (
            (reverse("admin:quantizers_job_artifact", args=[obj.pk, n]), jobs.artifact_name(f["filename"]))
            for n, f in enumerate(obj.files)))

    def get_urls(self) -> list[Any]:
        # The artifact for the admin's own session (the API's /jobs/{id}/artifact takes a token).
        download = self.admin_site.admin_view(self.artifact_download)
        return [path("<uuid:job_id>/artifact/<int:shard>/", download, name="quantizers_job_artifact"),
                *super().get_urls()]

    def artifact_download(self, request: HttpRequest, job_id: Any, shard: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            file, filename = jobs.job_artifact(job_id, shard)
        except ServiceError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return redirect(reverse("admin:quantizers_job_change", args=[job_id]))
        return FileResponse(file, as_attachment=True, filename=filename, content_type="application/octet-stream")

    @admin.display(description="report (lowest SQNR first)")
    def report_view(self, obj: Job) -> str:
        layers = list(obj.layers.order_by(F("sqnr_db").asc(nulls_last=True), "position"))
        if not layers:
            return "-"
        sortable = reverse("admin:quantizers_joblayer_changelist") + f"?job__id__exact={obj.pk}"
        head = format_html('<p><a href="{}">Every layer, sortable by any column</a></p><table><tr>{}</tr>', sortable,
                           format_html_join("", "<th>{}</th>", ((c,) for c in REPORT_TABLE)))
        rows = format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", "<td>{}</td>", ((_cell(layer.row.get(c)),) for c in REPORT_TABLE)),)
            for layer in layers))
        return head + rows + mark_safe("</table>")

    # ------------------------------------------------------------------ actions
    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        jobs.job_delete(obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for pk in queryset.values_list("pk", flat=True):
            jobs.job_delete(pk)

    def _each(self, request: HttpRequest, queryset: QuerySet[Job], service: Any, done: str) -> None:
        for pk in queryset.values_list("pk", flat=True):
            try:
                service(pk)
                self.message_user(request, f"Job {pk} {done}.", messages.SUCCESS)
            except ServiceError as exc:
                self.message_user(request, exc.detail, messages.ERROR)

    @admin.action(description="Cancel")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, jobs.job_cancel, "cancelled")

    @admin.action(description="Re-run")
    def rerun_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, jobs.job_rerun, "queued again")

    @admin.action(description="Delete (with its files)")
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, jobs.job_delete, "deleted")


REPORT_TABLE = ("name", "action", "shape", "dtype", "quantization_type", "scheme", "sqnr_db", "max_abs_error",
                "rms_error", "clipped", "bytes_in", "bytes_out", "ms")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "\u00d7".join(map(str, value))
    return "-" if value is None else str(value)


@admin.register(JobLayer)
class JobLayerAdmin(admin.ModelAdmin):
    """A job's report, one row per tensor, sortable by SQNR (click the column); reached from the job's page."""

    list_display = ("name", "job_link", "action", "sqnr_db", "max_abs_error", "bytes_in", "bytes_out")
    list_filter = ("job__id",)
    search_fields = ("name",)
    ordering = ("job", "position")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobLayer | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: JobLayer | None = None) -> bool:
        return False

    @admin.display(description="job")
    def job_link(self, obj: JobLayer) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:quantizers_job_change", args=[obj.job_id]),
                           str(obj.job_id)[:8])

    @admin.display(description="action")
    def action(self, obj: JobLayer) -> str:
        return str(obj.row.get("action"))

    @admin.display(description="max |error|")
    def max_abs_error(self, obj: JobLayer) -> str:
        return _cell(obj.row.get("max_abs_error"))

    @admin.display(description="bytes in")
    def bytes_in(self, obj: JobLayer) -> str:
        return _size(obj.row.get("bytes_in"))

    @admin.display(description="bytes out")
    def bytes_out(self, obj: JobLayer) -> str:
        return _size(obj.row.get("bytes_out"))
