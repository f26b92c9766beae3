"""Admin helpers every app's admin uses: inline profile choices read once per request, dates bounded to the
years people mean, and the audit history page (who changed what, in readable values)."""

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import yesno
from django.utils import formats, timezone
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper

from common.typed_dates import DateInRangeField


class CachedProfileChoicesMixin:
    """Reads the absence profiles once per request instead of once per inline row.

    Only the profile rows are shared, keyed by their query; the empty choice belongs to each field. A
    required field (the company's default) has none, an optional one (a user's override) has
    "---------" first: sharing one whole list gave the overrides no empty choice, so saving the page
    unchanged set every user without an override to the first profile.
    """

    cached_choice_fields: tuple[str, ...] = ("default_profile", "out_of_office_profile")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        if field is not None and db_field.name in self.cached_choice_fields:
            cache: dict[str, list[Any]] = request.__dict__.setdefault("_kp_choice_cache", {})
            key = str(field.queryset.query)
            if key not in cache:
                iterator = field.iterator(field)
                cache[key] = [iterator.choice(obj) for obj in field.queryset]
            empty = [("", field.empty_label)] if field.empty_label is not None else []
            field.choices = empty + cache[key]
        return field


class DatesInRangeMixin:
    """Every date field staff type is bounded to the years people mean (common.typed_dates)."""

    formfield_overrides: "Mapping[type[models.Field[Any, Any]], Mapping[str, Any]]" = {
        models.DateField: {"form_class": DateInRangeField}
    }


# --- Audit history ---------------------------------------------------------------------------------


def _readable(field: models.Field, value: Any) -> Any:
    """A stored value as staff read it: a choice's label, yes/no, dates and amounts in their language."""
    if value is None or value == "":
        return "–"
    if field.choices:
        return dict(field.flatchoices).get(value, value)
    if isinstance(field, models.BooleanField):
        return yesno(value)
    if isinstance(value, dt.datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    return formats.localize(value)


class ReadableChanges(HistoricalRecordContextHelper):
    """The "Changes" column of the history page, in readable values."""

    def prepare_delta_change_value(self, change: Any, value: Any) -> Any:
        field = self.model._meta.get_field(change.field)
        if field.many_to_many:
            return super().prepare_delta_change_value(change, value)
        return _readable(field, value)


class AuditedAdmin(DatesInRangeMixin, SimpleHistoryAdmin):
    """The admin's "History" page: every change field by field, and who made it (django-simple-history).

    Whoever may view the record may view its history; only who may change it may revert to an old
    version, and not where `revert_disabled` says so.
    """

    def get_historical_record_context_helper(self, request: HttpRequest, historical_record: Any) -> Any:
        return ReadableChanges(self.model, historical_record)

    def render_history_view(self, request: HttpRequest, template: str, context: dict[str, Any], **kwargs: Any) -> Any:
        # The columns of history_list_display show the stored value as is ("notice_given", True); the
        # page is rendered from the records, after the changes have been worked out, so format them here.
        fields = {field.name: field for field in self.model._meta.get_fields() if field.concrete}
        columns = [name for name in context.get("history_list_display", []) if name in fields]
        if columns:
            for record in context["page_obj"]:
                for name in columns:
                    setattr(record, name, _readable(fields[name], getattr(record, name)))
        return super().render_history_view(request, template, context, **kwargs)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # simple_history saves a POSTed old version for anyone who may *view* the history; only allow
        # what the page offers: a revert by someone with change permission, where reverting is enabled.
        if request.method == "POST":
            obj = self.get_object(request, unquote(object_id))  # None once deleted: restoring is a revert too
            if self.revert_disabled(request, obj) or not self.has_change_history_permission(request, obj):
                raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)
