"""Top-level URL configuration: admin for Nettsoft staff, language switching."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Kalender Push"
admin.site.site_title = "Kalender Push"
admin.site.index_title = "Nettsoft"
admin.site.empty_value_display = "–"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("webhooks/", include("sync.urls")),
]
