"""The staff admin site: Django admin with two-factor login when required, and the staff dashboard.

With OTP_REQUIRED_FOR_STAFF (on whenever DEBUG is off) the login form asks for a TOTP code and a
staff user whose session is not verified by a device is treated as having no admin access at all.
"""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


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

    def get_urls(self) -> list[Any]:
        from kalenderpush import dashboard

        return [
            path("dashboard/", self.admin_view(dashboard.dashboard_view), name="dashboard"),
            path(
                "customers/customer/<int:pk>/overview/",
                self.admin_view(dashboard.customer_overview_view),
                name="customers_customer_overview",
            ),
            *super().get_urls(),
        ]
