"""The gapless number series, the daily usage snapshot and the quarterly billing run schedules."""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations

OSLO = ZoneInfo("Europe/Oslo")
SNAPSHOT = "billing.tasks.snapshot_usage"
BILLING = "billing.tasks.run_quarterly_billing"


def forwards(apps, schema_editor):
    DocumentCounter = apps.get_model("billing", "DocumentCounter")
    for series in ("invoice", "credit_note"):
        DocumentCounter.objects.get_or_create(series=series)
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        func=SNAPSHOT,
        defaults={
            "name": "Daglig brukertelling (aktive brukere i går)",
            "schedule_type": "D",
            "repeats": -1,
            "next_run": dt.datetime(2026, 1, 1, 0, 10, tzinfo=OSLO),
        },
    )
    # Quarterly, on the 1st of January, April, July and October, for the quarter just ended.
    Schedule.objects.get_or_create(
        func=BILLING,
        defaults={
            "name": "Kvartalsvis fakturering (forrige kvartal)",
            "schedule_type": "Q",
            "repeats": -1,
            "next_run": dt.datetime(2027, 1, 1, 3, 0, tzinfo=OSLO),
        },
    )


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func__in=[SNAPSHOT, BILLING]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
