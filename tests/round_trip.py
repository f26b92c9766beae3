"""Round trips for the tests: what a browser submits from a page's form, and every row of the database.

`submitted_pairs` follows the HTML standard's "constructing the entry list" for the controls our pages
use, so a form posted back unchanged sends exactly what a person's browser would send after clicking
save without touching anything. `database_rows` and `changed_fields` tell whether that changed data.

Left out of the comparison, because a save changes them by design:
- tables that record the request rather than hold data: the admin's log ("no fields changed"), the
  sessions (login, the "saved" message) and simple_history's historical tables (a version per save);
- auto_now fields (Django sets them on every save);
- the part of a time below the second: Django's date and time widgets show whole seconds, so a saved
  instant keeps its second, the same time to anyone who reads it.
"""

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode, urljoin

import lxml.html
from django.apps import apps
from django.db import models
from django.test import Client
from simple_history.models import HistoricalChanges

from customers.models import Customer, CustomerSettings, ServiceUser
from sync.models import AbsenceProfile

# Buttons submit only when clicked, files need a chosen file; neither is part of "post it back unchanged".
_NOT_SUBMITTED = {"submit", "button", "image", "reset", "file"}

Rows = dict[str, dict[Any, dict[str, Any]]]

# With simple_history's historical tables (found by their class), the tables that record the request.
_RECORDS_OF_THE_REQUEST = {"admin.LogEntry", "sessions.Session"}


def post_forms(page: Any) -> list[Any]:
    """Every <form method="post"> of an HTML page, as lxml elements."""
    document = lxml.html.fromstring(page.content.decode())
    return [form for form in document.iter("form") if (form.get("method") or "get").lower() == "post"]


def form_action(form: Any, page_url: str) -> str:
    return urljoin(page_url, form.get("action") or "")


def submitted_pairs(form: Any) -> list[tuple[str, str]]:
    """(name, value) pairs in document order, as a browser submits the form untouched."""
    pairs: list[tuple[str, str]] = []
    for control in form.iter("input", "select", "textarea"):
        name = control.get("name")
        if not name or control.get("disabled") is not None or _in_disabled_fieldset(control, form):
            continue
        if control.tag == "input":
            kind = (control.get("type") or "text").lower()
            if kind in _NOT_SUBMITTED:
                continue
            if kind in ("checkbox", "radio"):
                if control.get("checked") is not None:
                    pairs.append((name, control.get("value", "on")))
                continue
            value = control.get("value", "")
            if kind not in ("hidden", "password"):
                value = value.replace("\r", "").replace("\n", "")  # a text field's value has no line breaks
            pairs.append((name, value))
        elif control.tag == "select":
            pairs.extend((name, value) for value in _selected_values(control))
        else:
            text = control.text_content()
            # The HTML parser drops one line break right after <textarea>; lxml keeps it.
            text = text[2:] if text.startswith("\r\n") else text[1:] if text.startswith("\n") else text
            pairs.append((name, text))
    # Form submission sends every line break as CRLF.
    return [(name, _crlf(value)) for name, value in pairs]


def _in_disabled_fieldset(control: Any, form: Any) -> bool:
    for ancestor in control.iterancestors():
        if ancestor is form:
            return False
        if ancestor.tag == "fieldset" and ancestor.get("disabled") is not None:
            return True
    return False


def _selected_values(select: Any) -> list[str]:
    options = [option for option in select.iter("option") if option.get("disabled") is None]
    selected = [option for option in options if option.get("selected") is not None]
    if select.get("multiple") is not None:
        return [_option_value(option) for option in selected]
    if selected:
        return [_option_value(selected[-1])]  # with several marked, the last one wins
    size = int(select.get("size") or 1)
    if options and size == 1:
        return [_option_value(options[0])]  # a drop-down shows, and submits, its first option
    return []


def _option_value(option: Any) -> str:
    value = option.get("value")
    return value if value is not None else " ".join(option.text_content().split())


def _crlf(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def post_back(client: Client, form: Any, page_url: str) -> Any:
    """POST a form with what it shows, the way a browser encodes it."""
    return client.post(
        form_action(form, page_url),
        urlencode(submitted_pairs(form)),
        content_type="application/x-www-form-urlencoded",
    )


# --- the data ---------------------------------------------------------------------------------------


def vary_from_the_defaults(customer: Customer) -> None:
    """Settings and users unlike the defaults, so a round trip that drops or resets a value shows it.

    The first user has their own profile (the catalogue's last) and no diversion, the second diverts,
    the rest follow the company; the company pushes office hours only (a short Friday, a Saturday) and
    tentative appointments, does not divert, and takes another out-of-office profile.
    """
    profiles = AbsenceProfile.objects.order_by("-position")
    CustomerSettings.objects.filter(customer=customer).update(
        office_hours_only=True,
        public_holidays=False,
        include_tentative=True,
        divert_by_default=False,
        fri_end=dt.time(14, 30),
        sat_start=dt.time(10),
        sat_end=dt.time(13),
        out_of_office_profile=profiles[1],
    )
    users = list(customer.service_users.order_by("pk"))
    ServiceUser.objects.filter(pk=users[0].pk).update(default_profile=profiles[0], divert_by_default=False)
    ServiceUser.objects.filter(pk=users[1].pk).update(divert_by_default=True)


# --- the database ----------------------------------------------------------------------------------


def _tracked_models() -> Iterable[type[models.Model]]:
    for model in apps.get_models(include_auto_created=True):  # with many-to-many tables (a user's groups)
        if model._meta.label in _RECORDS_OF_THE_REQUEST or issubclass(model, HistoricalChanges):
            continue
        yield model


def database_rows() -> Rows:
    """Every row of every model that holds data, keyed by model label and primary key, without
    auto_now fields."""
    rows: Rows = {}
    for model in _tracked_models():
        names = [
            field.attname
            for field in model._meta.concrete_fields
            if not getattr(field, "auto_now", False) and not field.primary_key
        ]
        pk = model._meta.pk.attname
        rows[model._meta.label] = {
            row[pk]: {name: _comparable(row[name]) for name in names}
            for row in model._default_manager.order_by().values(pk, *names)
        }
    return rows


def _comparable(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _same_to_the_second(old: Any, new: Any) -> bool:
    """Only the microseconds went: a form's initial value drops them (Django's widgets show seconds)."""
    if isinstance(old, dt.datetime | dt.time) and type(new) is type(old):
        return old.replace(microsecond=0) == new
    return False


def changed_fields(before: Rows, after: Rows, *, ignore: Iterable[str] = ()) -> list[str]:
    """What differs, one line per row or field: "customers.ServiceUser 3 default_profile_id: None → 1".

    `ignore` names fields that may change by design as "app.Model.attname" (a foreign key's ends in _id).
    """
    ignored = set(ignore)
    changes = []
    for label in sorted(set(before) | set(after)):
        old_rows, new_rows = before.get(label, {}), after.get(label, {})
        for pk in sorted(set(old_rows) - set(new_rows), key=str):
            changes.append(f"{label} {pk}: deleted")
        for pk in sorted(set(new_rows) - set(old_rows), key=str):
            changes.append(f"{label} {pk}: added {new_rows[pk]}")
        for pk in sorted(set(old_rows) & set(new_rows), key=str):
            for name, old in old_rows[pk].items():
                new = new_rows[pk][name]
                if old != new and not _same_to_the_second(old, new) and f"{label}.{name}" not in ignored:
                    changes.append(f"{label} {pk} {name}: {old!r} → {new!r}")
    return changes
