"""Top-level URL configuration: admin for Nettsoft staff, the customer portal, webhooks, language switching,
and the metrics operators read.

Errors answer with Norwegian pages in the look of the site they happen in (kalenderpush.error_pages).
"""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from kalenderpush import probes

urlpatterns = [
    path("", RedirectView.as_view(url="/portal/", permanent=False)),  # customers; staff use /admin/
    path("admin/", admin.site.urls),
    path("portal/", include("portal.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("webhooks/", include("sync.urls")),
    # for Prometheus (docs/operations.md): no login, no customer data; /healthz and /readyz are answered by
    # kalenderpush.probes.ProbeMiddleware, before the host check
    path("metrics", probes.metrics_view, name="metrics"),
]

handler400 = "kalenderpush.error_pages.bad_request"
handler403 = "kalenderpush.error_pages.permission_denied"
handler404 = "kalenderpush.error_pages.page_not_found"
handler500 = "kalenderpush.error_pages.server_error"
