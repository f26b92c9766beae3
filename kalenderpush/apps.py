"""The admin app with Kalender Push's own admin site, and the third-party apps under names staff read in Norwegian.

django-q2, django-axes and django-otp name their apps in English only ("Django Q", "Axes", "Otp_Totp"), so
INSTALLED_APPS lists these subclasses, whose names go through our catalog. django-otp also names its models,
fields and admin fieldsets in plain strings, never through gettext: `ready()` hands them to gettext_lazy with
the same English text as msgid (so migrations see no change) and registers admins with translated fieldsets.
"""

from typing import Any

from axes.apps import AppConfig as AxesAppConfig
from django.contrib.admin.apps import AdminConfig
from django.db import models
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.apps import DefaultConfig as OtpStaticConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as OtpTotpConfig
from django_q.apps import DjangoQConfig


class KalenderPushAdminConfig(AdminConfig):
    default_site = "kalenderpush.admin_site.KalenderPushAdminSite"

    def ready(self) -> None:
        super().ready()  # imports every app's admin module
        # Admin registrations, imported once the apps are loaded (the exception to "imports at the top": these
        # modules import models).
        from kalenderpush import customer_admin, third_party_admin  # noqa: F401  (customer_admin registers Customer)

        third_party_admin.register()


class BackgroundJobsConfig(DjangoQConfig):
    verbose_name = _("Background jobs")


class SignInSecurityConfig(AxesAppConfig):
    verbose_name = _("Sign-in security")


def translate_model_names(model: type[models.Model]) -> None:
    """The model's names, field labels and help texts through gettext (msgid: the English text as it is; the
    Norwegian is in third_party_locale/, as makemessages cannot see these strings)."""
    options: Any = model._meta
    options.verbose_name = _(str(options.verbose_name))
    options.verbose_name_plural = _(str(options.verbose_name_plural))
    for field in options.concrete_fields:
        field.verbose_name = _(str(field.verbose_name))
        if field.help_text:
            field.help_text = _(str(field.help_text))


class TotpDevicesConfig(OtpTotpConfig):
    verbose_name = _("Two-factor: authenticator apps")

    def ready(self) -> None:
        super().ready()
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from kalenderpush import otp_admin  # admin registration in ready(): it imports django-otp's models

        translate_model_names(TOTPDevice)
        otp_admin.register_totp_admin()


class BackupCodesConfig(OtpStaticConfig):
    verbose_name = _("Two-factor: backup codes")

    def ready(self) -> None:
        super().ready()
        from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

        from kalenderpush import otp_admin  # admin registration in ready(): it imports django-otp's models

        translate_model_names(StaticDevice)
        translate_model_names(StaticToken)
        otp_admin.register_static_admin()
