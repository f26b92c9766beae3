"""The admin app, configured with Kalender Push's own admin site (two-factor for staff, dashboard)."""

from django.contrib.admin.apps import AdminConfig


class KalenderPushAdminConfig(AdminConfig):
    default_site = "kalenderpush.admin_site.KalenderPushAdminSite"

    def ready(self) -> None:
        super().ready()  # imports every app's admin module
        from kalenderpush import third_party_admin

        third_party_admin.register()
