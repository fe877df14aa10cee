"""The spec's routes, exactly as written, each with or without a trailing slash."""

from __future__ import annotations

from django.urls import re_path

from . import views

ID = r"(?P<instance_id>[^/]+)"


def route(pattern: str, view, name: str):  # type: ignore[no-untyped-def]
    # `(?:/)?` rather than `/?`: the same match, but the OpenAPI schema (and /documentation) then shows the spec's
    # path, /instances/{instance_id}/quantize, where `/?` simplified to a trailing slash the spec does not write.
    return re_path(rf"^{pattern}(?:/)?$", view, name=name)


instances = views.InstanceViewSet

urlpatterns = [
    re_path(r"^$", views.root, name="root"),
    route("readyz", views.readyz, "readyz"),
    route("documentation", views.documentation, "documentation"),
    route("instances", instances.as_view({"get": "list"}), "instance-list"),
    route(rf"instances/{ID}", instances.as_view({"post": "create", "delete": "destroy"}), "instance-detail"),
    route(rf"instances/{ID}/config",
          instances.as_view({"get": "get_config", "put": "put_config", "patch": "patch_config"}), "instance-config"),
    *[
        route(rf"instances/{ID}/{action}", instances.as_view({"post": action}), f"instance-{action}")
        for action in ("quantize", "dequantize", "quantize_dequantize", "calibrate", "compute_params",
                       "clear_cache", "reset_stats", "upload_numpy")
    ],
    route(rf"instances/{ID}/stats", instances.as_view({"get": "stats"}), "instance-stats"),
    route(rf"instances/{ID}/parameters",
          instances.as_view({"get": "export_parameters", "post": "import_parameters"}), "instance-parameters"),
    route(rf"instances/{ID}/layer_params/(?P<layer_name>[^/]+)", instances.as_view({"get": "layer_params"}),
          "instance-layer-params"),
]
