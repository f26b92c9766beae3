"""Schedules of the sync: the sweep, the hourly group refresh, subscription renewal, record clean-up."""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations

START = dt.datetime(2026, 1, 1, 0, 0, tzinfo=ZoneInfo("Europe/Oslo"))
SCHEDULES = [
    # func, name, schedule_type, minutes
    ("sync.jobs.sweep_job", "Synk: sveip av alle kalenderkilder (hver kilde etter sitt intervall)", "I", 1),
    ("sync.jobs.refresh_groups_job", "Synk: oppdater aktiveringsgrupper og MBN-treff", "H", None),
    ("sync.jobs.renew_subscriptions_job", "Synk: forny varslingsabonnementer i Graph", "I", 360),
    ("sync.jobs.delete_old_runs_job", "Synk: slett synkroniseringslogg eldre enn 30 dager", "D", None),
]


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for func, name, kind, minutes in SCHEDULES:
        Schedule.objects.get_or_create(
            func=func,
            defaults={"name": name, "schedule_type": kind, "minutes": minutes, "repeats": -1, "next_run": START},
        )


def backwards(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func__in=[row[0] for row in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0003_calendar_sources"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
