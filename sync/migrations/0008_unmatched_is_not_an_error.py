"""A user without an MBN number (or a customer without MBN access) is no longer a failed sync: the errors
recorded for it before are cleared, and its sync records (which pushed nothing) removed."""

from django.db import migrations

LEGACY = ["not matched to an MBN subscriber", "the customer has no MBN connection"]


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    CalendarUser = apps.get_model("sync", "CalendarUser")
    SyncRun = apps.get_model("sync", "SyncRun")
    CalendarUser.objects.filter(last_error__in=LEGACY).update(last_error="", last_error_at=None)
    SyncRun.objects.filter(error__in=LEGACY).delete()


class Migration(migrations.Migration):
    dependencies = [("sync", "0007_calendaruser_mbn_unsure")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
