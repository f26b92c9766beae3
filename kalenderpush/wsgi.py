"""WSGI entry point for Kalender Push."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kalenderpush.settings")

application = get_wsgi_application()
