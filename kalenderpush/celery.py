"""The Celery application that runs the calendar-sync fleet (configured from Django settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalenderpush.settings")

app = Celery("kalenderpush")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
