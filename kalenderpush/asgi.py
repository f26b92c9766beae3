"""ASGI entry point for Kalender Push."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalenderpush.settings")

application = get_asgi_application()
