"""Kalender Push: calendar appointments to Telenor Mobilt Bedriftsnett, and the business around it."""

from .celery import app as celery_app

__all__ = ["celery_app"]
