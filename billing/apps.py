from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

from common.staff_groups import ensure_groups


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        # The staff groups (common.staff_groups) are made after every migrate; connected here, after
        # django.contrib.auth's receiver, so the permissions exist when the groups are given them.
        post_migrate.connect(ensure_groups, dispatch_uid="billing.ensure_groups")
