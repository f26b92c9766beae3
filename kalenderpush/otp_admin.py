"""django-otp's admins with fieldset titles and search help in Norwegian (theirs are plain English strings)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

# The fieldset titles django-otp's admins use, as msgids of our catalog.
FIELDSET_TITLES = {
    "Identity": _("Identity"),
    "Timestamps": _("Timestamps"),
    "Configuration": _("Configuration"),
    "State": _("State"),
    "Throttling": _("Throttling"),
}
SEARCH_HELP = _("Search by the user's user name or e-mail address.")


def _translated(fieldsets: Any) -> list[Any]:
    return [(FIELDSET_TITLES.get(title, title) if title else title, options) for title, options in fieldsets]


class TotpDeviceAdmin(TOTPDeviceAdmin):
    search_help_text = SEARCH_HELP

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return _translated(super().get_fieldsets(request, obj))

    @admin.display(description=_("QR code"))
    def qrcode_link(self, device: TOTPDevice) -> str:
        url = reverse("admin:otp_totp_totpdevice_config", kwargs={"pk": device.pk})
        return format_html('<a href="{}">{}</a>', url, gettext("Show QR code"))


class BackupCodeDeviceAdmin(StaticDeviceAdmin):
    search_help_text = SEARCH_HELP

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return _translated(super().get_fieldsets(request, obj))


def _replace(model: Any, model_admin: type[admin.ModelAdmin]) -> None:  # type: ignore[type-arg]
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)


def register_totp_admin() -> None:
    _replace(TOTPDevice, TotpDeviceAdmin)


def register_static_admin() -> None:
    _replace(StaticDevice, BackupCodeDeviceAdmin)
