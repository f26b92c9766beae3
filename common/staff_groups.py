"""The staff groups and their permissions: "Staff" (every permission of the product's apps) and "Accountants"
(invoices and credit notes, view only). Created after every migrate (billing's AppConfig.ready() connects
`ensure_groups` to post_migrate, after django.contrib.auth's permissions receiver)."""

from typing import Any

from django.apps import apps

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


def _last_app_with_models() -> Any:
    """The app post_migrate is sent for last: it is sent only for apps with a models module (so not for devtools,
    the last installed app in development)."""
    return [config for config in apps.get_app_configs() if config.models_module is not None][-1]


def ensure_groups(**kwargs: Any) -> None:
    """Create the staff groups with their permissions (idempotent; runs after every migrate)."""
    # Django's auth models, not ours: billing's apps.py imports this module while the app registry loads.
    from django.contrib.auth.models import Group, Permission

    if "app_config" in kwargs and kwargs["app_config"] is not _last_app_with_models():
        return  # once per migrate, after the last app, when every app's permissions exist

    staff, _created = Group.objects.get_or_create(name="Staff")
    staff.permissions.add(*Permission.objects.filter(content_type__app_label__in=STAFF_APPS))
    for name, permissions in GROUPS.items():
        group, _created = Group.objects.get_or_create(name=name)
        for dotted in permissions:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is not None:
                group.permissions.add(permission)
