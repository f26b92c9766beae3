"""A test-only URL configuration: the real URLs plus views that fail, for the error-page tests."""

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.urls import path

from kalenderpush.urls import handler400, handler403, handler404, handler500  # noqa: F401 (read by Django)
from kalenderpush.urls import urlpatterns as real_urlpatterns


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


def suspicious_view(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("a request that makes no sense")


urlpatterns = [
    path("portal/feiler/", failing_view),
    path("admin/feiler/", failing_view),
    path("webhooks/feiler/", failing_view),
    path("portal/mistenkelig/", suspicious_view),
    *real_urlpatterns,
]
