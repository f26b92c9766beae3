"""Top-level URL configuration: admin for Nettsoft staff, the customer portal, webhooks, language switching."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/portal/", permanent=False)),  # customers; staff use /admin/
    path("admin/", admin.site.urls),
    path("portal/", include("portal.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("webhooks/", include("sync.urls")),
]
