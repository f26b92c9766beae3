"""Schedules the daily purge of ended customers' secrets and personal data (sync.purge)."""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations

FUNC = "sync.jobs.purge_ended_customers_job"


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        func=FUNC,
        defaults={
            "name": "Slett data for avsluttede kunder",
            "schedule_type": "D",
            "repeats": -1,
            "next_run": dt.datetime(2026, 1, 1, 0, 45, tzinfo=ZoneInfo("Europe/Oslo")),
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0013_mbn_connection_active"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
