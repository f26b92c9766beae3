"""Celery tasks of the calendar-sync fleet."""

import socket

from celery import shared_task
from django.db import connection

from customers.models import ServiceUser


@shared_task(name="sync.tasks.worker_health")
def worker_health() -> dict[str, object]:
    """Proves a sync worker is up and reaches the database: host, database vendor, service users."""
    return {
        "hostname": socket.gethostname(),
        "database": connection.vendor,
        "service_users": ServiceUser.objects.count(),
    }
