"""The spec's routes, exactly as written, each with or without a trailing slash."""

from __future__ import annotations

from django.urls import re_path
from rest_framework.routers import DynamicRoute, Route, SimpleRouter

from . import options, schema, views  # noqa: F401  (schema: the views' OpenAPI description, applied on import)

# `(?:/)?` rather than `/?`: the same match, but the OpenAPI schema (and /documentation) then shows the spec's
# path, /instances/{instance_id}/quantize, where `/?` simplified to a trailing slash the spec does not write.
TRAILING_SLASH = "(?:/)?"


class SpecRouter(SimpleRouter):
    """The spec's layout: GET /instances lists, POST /instances/{id} creates (the client names the instance),
    DELETE /instances/{id} deletes, and each `@action` is /instances/{id}/{url_path}."""

    routes = [
        Route(url=r"^{prefix}{trailing_slash}$", mapping={"get": "list"}, name="{basename}-list", detail=False,
              initkwargs={}),
        Route(url=r"^{prefix}/{lookup}{trailing_slash}$", mapping={"post": "create", "delete": "destroy"},
              name="{basename}-detail", detail=True, initkwargs={}),
        DynamicRoute(url=r"^{prefix}/{lookup}/{url_path}{trailing_slash}$", name="{basename}-{url_name}",
                     detail=True, initkwargs={}),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = TRAILING_SLASH


class JobRouter(SpecRouter):
    """GET /jobs lists, GET and DELETE /jobs/{job_id}, each `@action` is /jobs/{job_id}/{url_path}."""

    routes = [
        Route(url=r"^{prefix}{trailing_slash}$", mapping={"get": "list"}, name="{basename}-list", detail=False,
              initkwargs={"query_options": options.JOB_LIST}),
        Route(url=r"^{prefix}/{lookup}{trailing_slash}$", mapping={"get": "retrieve", "delete": "destroy"},
              name="{basename}-detail", detail=True, initkwargs={}),
        SpecRouter.routes[2],
    ]


router = SpecRouter()
router.register("instances", views.InstanceViewSet, basename="instance")
job_router = JobRouter()
job_router.register("jobs", views.JobViewSet, basename="job")


def route(pattern: str, view, name: str):  # type: ignore[no-untyped-def]
    return re_path(rf"^{pattern}{TRAILING_SLASH}$", view, name=name)


# Django tries the patterns in order, and these take nearly every request: GET / (probes), then the array
# operations. (The patterns exclude each other, so their order changes nothing else; the router lists them
# alphabetically, which put quantize twelfth.)
HOT_ROUTES = ("instance-quantize", "instance-dequantize", "instance-quantize-dequantize")

urlpatterns = [
    re_path(r"^$", views.Root.as_view(), name="root"),
    *sorted(router.urls, key=lambda pattern: pattern.name not in HOT_ROUTES),  # stable: the rest keep their order
    route("readyz", views.Readyz.as_view(), "readyz"),
    route("metrics", views.Metrics.as_view(), "metrics"),
    route("documentation", views.Documentation.as_view(), "documentation"),
    *job_router.urls,
]
