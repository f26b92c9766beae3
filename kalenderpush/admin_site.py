"""The staff admin site: Django admin with two-factor login when required, and the staff dashboard.

With OTP_REQUIRED_FOR_STAFF (on whenever DEBUG is off) the login form asks for a TOTP code and a
staff user whose session is not verified by a device is treated as having no admin access at all.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.views.main import ERROR_FLAG
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import path
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from kalenderpush import customer_connections, dashboard

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])

MAX_PARAMETER_LENGTH = 2000  # characters; the longest search or filter value staff send is far shorter


class KalenderPushAdminSite(admin.AdminSite):
    site_header = "Kalender Push"
    site_title = "Kalender Push"
    index_title = "Nettsoft"
    empty_value_display = "–"
    index_template = "admin/kalenderpush_index.html"
    # The app list beside every page costs lists a quarter of a 1280 px screen; the index and the
    # breadcrumbs lead to the same places.
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        allowed = super().has_permission(request)
        if allowed and settings.OTP_REQUIRED_FOR_STAFF:
            return bool(request.user.is_verified())  # type: ignore[union-attr]
        return allowed

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if settings.OTP_REQUIRED_FOR_STAFF:
            self.login_form = OTPAdminAuthenticationForm
            self.login_template = OTPAdminSite.login_template
        else:
            self.login_form = AdminAuthenticationForm
            self.login_template = None
        return super().login(request, extra_context)

    def admin_view(self, view: _View, cacheable: bool = False) -> _View:
        """Every admin page. Query parameters a database cannot take are invalid filters, answered as
        Django answers other bad filters (back to the page with `?e=1`): a NUL character (PostgreSQL
        refuses it), a value longer than any search or filter (SQLite refuses long LIKE patterns), or a
        date too far out to convert to UTC (`?created_at__gte=0001-01-01`)."""
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            invalid_filter = HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
            if request.method == "GET" and any(
                "\x00" in key or any("\x00" in value or len(value) > MAX_PARAMETER_LENGTH for value in values)
                for key, values in request.GET.lists()
            ):
                return invalid_filter
            try:
                return inner(request, *args, **kwargs)
            except OverflowError:
                if request.method != "GET" or not request.GET or request.GET.get(ERROR_FLAG) == "1":
                    raise
                return invalid_filter

        return cast(_View, guarded)

    def get_urls(self) -> list[Any]:
        return [
            path("dashboard/", self.admin_view(dashboard.dashboard_view), name="dashboard"),
            path(
                "customers/customer/<int:pk>/overview/",
                self.admin_view(dashboard.customer_overview_view),
                name="customers_customer_overview",
            ),
            path(
                "customers/customer/<int:pk>/connections/",
                self.admin_view(customer_connections.customer_connections_view),
                name="customers_customer_connections",
            ),
            path(
                "customers/customer/<int:pk>/connections/test/",
                self.admin_view(customer_connections.customer_connection_test_view),
                name="customers_customer_connections_test",
            ),
            path(
                "customers/customer/<int:pk>/connections/remove/",
                self.admin_view(customer_connections.customer_connection_remove_view),
                name="customers_customer_connections_remove",
            ),
            *super().get_urls(),
        ]
