"""Our changes to third-party admins on the staff site, applied once every app's admin is registered.

django-q's schedule admin saved a schedule without arguments (args and kwargs NULL, as our migrations
and q2 store them) with empty strings instead: saving the page unchanged changed the row.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django_q.admin import ScheduleAdmin as QScheduleAdmin
from django_q.models import Schedule


class ScheduleAdmin(QScheduleAdmin):
    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.null and isinstance(field, forms.CharField):
            field.empty_value = None  # an empty field stays "none", not ""
        return field


def register() -> None:
    admin.site.unregister(Schedule)
    admin.site.register(Schedule, ScheduleAdmin)
