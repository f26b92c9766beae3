from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

STAFF_APPS = ["customers", "billing", "sync", "portal", "django_q", "axes"]

# Group name → permissions (app_label.codename). Accountants see invoices and credit notes, nothing else;
# Staff get every permission of the product's apps (STAFF_APPS).
GROUPS: dict[str, list[str]] = {
    "Accountants": [
        "billing.view_invoice",
        "billing.view_invoiceline",
        "billing.view_invoiceevent",
        "billing.view_creditnote",
        "billing.view_creditnoteline",
    ],
}


def ensure_groups(**kwargs: Any) -> None:
    """Create the staff groups with their permissions (idempotent; runs after every migrate)."""
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

    # post_migrate is sent for each app with models (an app without, like devtools, gets none): act once, after
    # the last of them, when every app's permissions exist.
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if "app_config" in kwargs and kwargs["app_config"] is not with_models[-1]:
        return

    staff, _created = Group.objects.get_or_create(name="Staff")
    staff.permissions.add(*Permission.objects.filter(content_type__app_label__in=STAFF_APPS))
    for name, permissions in GROUPS.items():
        group, _created = Group.objects.get_or_create(name=name)
        for dotted in permissions:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                group.permissions.add(permission)


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = _("Billing")

    def ready(self) -> None:
        post_migrate.connect(ensure_groups, dispatch_uid="billing.ensure_groups")
