"""URL wiring: the API at the root (as the spec writes it), the admin, the OpenAPI schema and its UIs."""

from django.contrib import admin
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from quantizers import exceptions
from quantizers.api import urls as api_urls

# One flat table, the API's routes first (they take nearly every request): an include() would add a resolver pass.
urlpatterns = [
    *api_urls.urlpatterns,
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # Anything else is a JSON 404, with DEBUG on or off and whatever the method: exempt from CSRF checks (there is
    # nothing to protect), which would otherwise answer an unmatched POST with a 403.
    re_path(r"^(?!admin/|static/).*$", csrf_exempt(exceptions.json_not_found)),
]

handler400 = exceptions.json_bad_request
handler403 = exceptions.json_permission_denied
handler404 = exceptions.json_not_found
handler500 = exceptions.json_server_error
