"""The staff groups are made by every migrate, also with devtools (an app without models) installed last."""

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.management.sql import emit_post_migrate_signal

pytestmark = pytest.mark.django_db


def test_it_creates_the_staff_groups_after_a_migrate_when_the_last_installed_app_has_no_models():
    last = list(apps.get_app_configs())[-1]
    assert last.label == "devtools" and last.models_module is None
    Group.objects.filter(name__in=["Staff", "Accountants"]).delete()

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    staff = set(Group.objects.get(name="Staff").permissions.values_list("content_type__app_label", flat=True))
    assert {"customers", "billing", "sync", "portal"} <= staff
    accountants = set(Group.objects.get(name="Accountants").permissions.values_list("codename", flat=True))
    assert "view_invoice" in accountants and "change_invoice" not in accountants
