"""Schedules the nightly job that marks subscriptions past their effective end as ended."""

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import migrations

FUNC = "customers.tasks.end_expired_subscriptions"


def schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        func=FUNC,
        defaults={
            "name": "Avslutt abonnementer etter virkningsdato",
            "schedule_type": "D",
            "repeats": -1,
            "next_run": dt.datetime(2026, 1, 1, 0, 15, tzinfo=ZoneInfo("Europe/Oslo")),
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=FUNC).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0002_seed_price_list_2019"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
